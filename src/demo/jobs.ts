// The demo's backup jobs on the volume demo.ts made: dumps at levels 0, 1 and 2 into the
// demo's own catalog, verify of the chain, a restore of the chain into a new volume, and
// a mirror to a second volume on this machine, updated after a change. Each result is
// checked against the images the snapshots were taken from.
import path from 'node:path';
import { Catalog } from '../catalog/index.js';
import { fileSource as streamFileSource, fileTarget } from '../media/file/file-medium.js';
import { MirrorState } from '../mirror/index.js';
import { destinationFor, mirrorUpdate } from '../mirror/run.js';
import { noProgress, type Progress } from '../core/progress.js';
import { dumpVolumeAt } from '../stream/dump-at.js';
import { restoreStreams } from '../stream/restore.js';
import { verifyStreams } from '../stream/verify.js';

export interface DemoDump {
  level: number;
  top: string;
  expression: string;
  blocks: number;
  bytes: number;
  streamBytes: number;
  file: string;
}

/** Dumps `volume` at level i for the i-th snapshot of `tops` (level 0, 1, 2...), each to DIR/TOP.lN. */
export async function demoDumps(dir: string, volume: string, tops: string[], progress: Progress = noProgress): Promise<DemoDump[]> {
  const catalog = new Catalog(path.join(dir, 'catalog.json'));
  const out: DemoDump[] = [];
  for (let level = 0; level < tops.length; level++) {
    const file = path.join(dir, `${tops[level]}.l${level}`);
    const r = await dumpVolumeAt(volume, () => fileTarget(file), { level, snapshot: tops[level], order: 'vbn', compression: { codec: 'zstd', level: 1 }, threads: 1, catalog }, progress);
    out.push({ level, top: r.top, expression: r.expression, blocks: r.blocks, bytes: r.bytes, streamBytes: r.streamBytes, file });
  }
  return out;
}

export async function demoVerify(files: string[], progress: Progress = noProgress) {
  return verifyStreams(files.map(streamFileSource), progress);
}

export async function demoRestore(files: string[], to: string, progress: Progress = noProgress) {
  return restoreStreams(files.map(streamFileSource), to, progress);
}

/** One mirror update of `volume` to the volume at `to` (created by the first), with the demo's own state file. */
export async function demoMirror(dir: string, volume: string, to: string, progress: Progress = noProgress) {
  return mirrorUpdate(volume, destinationFor(to), { op: 'mirror.update', state: new MirrorState(path.join(dir, 'mirror-state.json')), progress });
}
