// The largest file a directory's file system holds, found by sizing a sparse probe file
// (no data is written): ext4 holds files up to 16 TiB, ext2 with 1 KiB blocks up to
// 16 GiB, XFS and btrfs far more. For a file that must be large but may be smaller when
// the file system says no (a protection destination's base).
import fs from 'node:fs';
import path from 'node:path';
import { fromSystemError } from '../core/errors.js';

/** The largest size (a multiple of `unit`) below `tooLarge` that a file in `dir` may have. */
export function largestFileIn(dir: string, tooLarge: number, unit = 4096): number {
  const probe = path.join(dir, `.size-probe-${process.pid}`);
  let fd: number;
  try {
    fd = fs.openSync(probe, 'w');
  } catch (err) {
    throw fromSystemError(err, probe, 'finding the largest file the file system holds');
  }
  try {
    let lo = 0; // fits
    let hi = Math.floor(tooLarge / unit); // does not (in units)
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      try {
        fs.ftruncateSync(fd, mid * unit);
        lo = mid;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EFBIG') throw fromSystemError(err, probe, 'finding the largest file the file system holds');
        hi = mid;
      }
    }
    return lo * unit;
  } finally {
    fs.closeSync(fd);
    fs.rmSync(probe, { force: true });
  }
}
