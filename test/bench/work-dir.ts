// The scratch directory of one run: on a real disk (tmpfs would make every writeback
// figure meaningless), with room for the largest step, removed at the end.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
/**
 * Peak use: a 4 GiB image, its 4 GiB copy, a ~4 GiB volume, the sparse 1 TiB volume's
 * planes (import, image-eval); the dump benchmarks' 4 GiB volume, its level-0 stream and
 * either its copy before the change and the rsync daemon's copy, or the 8 GiB volume,
 * or a restored volume and a cat copy (about 16 GiB).
 */
export const NEEDED_BYTES = 17 * 2 ** 30;

export function makeWorkDir(parent = os.tmpdir()): { dir: string; describe: string } {
  const st = fs.statfsSync(parent);
  if (st.type === TMPFS_MAGIC || st.type === RAMFS_MAGIC) {
    throw new Error(`${parent} is in memory (tmpfs): benchmarks must write to a disk; pass --work DIR on one`);
  }
  const free = st.bavail * st.bsize;
  if (free < NEEDED_BYTES) {
    throw new Error(`${parent} has ${(free / 2 ** 30).toFixed(1)} GiB free, the benchmarks need ${NEEDED_BYTES / 2 ** 30} GiB; pass --work DIR elsewhere`);
  }
  const dir = fs.mkdtempSync(path.join(parent, 'imgstream-bench-'));
  return { dir, describe: `${dir} (file system type 0x${st.type.toString(16)}, ${(free / 2 ** 30).toFixed(0)} GiB free)` };
}

export function removeWorkDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
}
