// restore --as-of: the chain of dumps from the catalog, opened on their media.
import { chainFor, dumpsOfVolume, type Catalog } from '../catalog/index.js';
import { NotFoundError, UsageError } from '../core/errors.js';
import type { StreamSource } from '../media/medium.js';
import { sourceForPosition, type SourceOptions } from '../media/resolve.js';
import { Volume } from '../volume/volume.js';
import fs from 'node:fs';

function uuidOf(volumePath: string): string {
  const vol = Volume.open(volumePath, { write: false });
  try {
    return vol.rootRecord.uuid;
  } finally {
    vol.close();
  }
}

/**
 * The sources of the chain that restores `volumePath` as of `asOf`. The catalog's dumps are
 * narrowed to one volume: the one at `volumePath` when it exists, else the one `volume`
 * names (a uuid or prefix, or a volume path); an answer that depends on an unnamed volume
 * is refused.
 */
export function sourcesForChain(catalog: Catalog, volumePath: string, asOf: string, opts: SourceOptions & { volume?: string } = {}): StreamSource[] {
  let dumps = catalog.read();
  if (dumps.length === 0) throw new NotFoundError(`the catalog ${catalog.file} has no dumps`);
  if (opts.volume !== undefined) {
    const named = opts.volume;
    dumps = dumpsOfVolume(dumps, named, fs.existsSync(named) && fs.statSync(named).isFile() ? uuidOf(named) : undefined);
  }
  // restoring onto an existing volume: only its own dumps
  if (fs.existsSync(volumePath)) {
    const uuid = uuidOf(volumePath);
    if (opts.volume !== undefined && dumps[0].volume.uuid !== uuid) throw new UsageError(`--volume ${opts.volume} is not the volume at ${volumePath} (${uuid.slice(0, 8)})`, 'a chain restores only onto its own volume: leave out --volume, or restore into a new path');
    dumps = dumps.filter((d) => d.volume.uuid === uuid);
    if (dumps.length === 0) throw new NotFoundError(`the catalog ${catalog.file} has no dumps of ${volumePath}`);
  }
  // each source must still hold the dump the catalog records there (a file may have been overwritten since)
  return chainFor(dumps, asOf).map((d) => Object.assign(sourceForPosition(d.media, opts), { expected: { streamId: d.id, top: d.top.name } }));
}
