// The volume a restore goes into: a new one made for a full stream (under a temporary name
// until every stream is in), or the existing one at the path (restore.ts).
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError, NotAVolumeError, NotFoundError } from '../core/errors.js';
import type { StreamHeader } from '../format/image-stream.js';
import { Volume } from '../volume/volume.js';
import { removeStaleTemp, tempBeside } from '../fs/stale-temp.js';
import { removeOnStop } from '../fs/stop-cleanup.js';
import { claimNewVolume } from './new-volume-lock.js';
import { escapeRegExp } from '../core/regexp.js';

/**
 * A new, empty volume with the identity and geometry a full stream comes from, under a
 * temporary name that a stop signal removes until `unkeep` is called (Ctrl-C or kill: no
 * half-restored volume left beside VOL).
 */
export function createForStream(volumePath: string, header: StreamHeader, name: string, moreGiven: boolean): { tmp: string; unkeep: () => void } {
  if (header.base !== null) {
    // streams are applied in the order given: a level 0 given later is not looked for
    const hint = moreGiven ? 'streams are applied in the order given: put the level 0 stream first, then each level above it' : 'start the chain with its level 0 stream';
    throw new NotFoundError(`${name}: ${volumePath} does not exist, and a level ${header.level} stream needs its base snapshot "${header.base.name}"`, hint);
  }
  const v = header.volume;
  const unclaim = claimNewVolume(volumePath); // before a killed one's leftovers are taken for stale: they may be a running one's
  const { dir, prefix } = tempBeside(volumePath, 'restoring');
  removeStaleTemp(dir, prefix);
  // and the volume file a killed restore was creating under that name (volume create's own temporary of it)
  removeStaleTemp(dir, new RegExp(`^\\.${escapeRegExp(prefix)}(\\d+)\\.imgstream-new-\\d+$`));
  const tmp = path.join(dir, `${prefix}${process.pid}`);
  const unkeepTmp = removeOnStop(tmp);
  const unkeep = (): void => {
    unkeepTmp();
    unclaim();
  };
  fs.rmSync(tmp, { force: true });
  try {
    Volume.create(tmp, { size: v.logicalSize, blockSize: v.blockSize, nblocks: v.nblocks, maxSnapshots: v.maxSnapshots, uuid: v.uuid });
    const probe = Volume.open(tmp, { write: false });
    try {
      if (probe.rootRecord.mapDepth !== v.mapDepth) throw new InvalidInputError(`${name}: unsupported volume geometry (map depth ${v.mapDepth})`);
    } finally {
      probe.close();
    }
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    unkeep();
    throw err;
  }
  return { tmp, unkeep };
}

/** The existing volume a restore goes into; a file of another kind is named with what restore can do instead. */
export function openTarget(volumePath: string): Volume {
  try {
    return Volume.open(volumePath, { write: true, unfinishedRestore: true }); // a restore stopped half way is finished by running it again
  } catch (err) {
    if (!(err instanceof NotAVolumeError)) throw err;
    throw new NotAVolumeError(err.message, 'restore into an imgstream volume, or give --to a path that does not exist yet: restore creates the volume');
  }
}
