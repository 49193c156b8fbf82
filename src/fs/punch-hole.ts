// Giving back the file space of ranges a file no longer uses: the blocks a failed import,
// restore or mirror transfer wrote into a volume file's free space. They are free to the
// volume again, but the file system keeps them allocated, so a volume on a file system
// that filled up stayed full (every later write failed too) until the file grew a hole
// there again. Node has no fallocate(2); util-linux's fallocate(1) punches the holes
// (FALLOC_FL_PUNCH_HOLE, the file's size kept). Where it is missing or the file system
// cannot punch, nothing changes but the space taken: this is never needed for correctness.
import { spawnSync } from 'node:child_process';

/** At most this many fallocate runs per call: the largest ranges first. */
const MAX_RANGES = 64;

/** Byte ranges [offset, length) of `file` whose space goes back to the file system; returns the bytes punched. */
export function punchHoles(file: string, ranges: Array<[number, number]>): number {
  const largest = [...ranges].filter(([, len]) => len > 0).sort((a, b) => b[1] - a[1]).slice(0, MAX_RANGES);
  let punched = 0;
  for (const [offset, length] of largest) {
    const r = spawnSync('fallocate', ['--punch-hole', '--offset', String(offset), '--length', String(length), file], { stdio: 'ignore', timeout: 10_000 });
    if (r.error || r.status !== 0) break; // missing, or a file system that cannot: the rest cannot either
    punched += length;
  }
  return punched;
}
