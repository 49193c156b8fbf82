// Copying a volume file without filling its holes: a base volume is mostly unallocated
// (its layout has room for four times the disk), and a plain copy would allocate all of
// it. A reflink (FICLONE) shares the blocks where the file system can; otherwise the
// file is read in 1 MiB chunks (holes read as zeros from the page cache, without disk
// I/O) and only its non-zero 4 KiB pages are written.
import fs from 'node:fs';
import { isZero } from '../volume/zero.js';

const CHUNK = 1 << 20;
const PAGE = 4096;

export function copySparse(src: string, dst: string): void {
  try {
    fs.copyFileSync(src, dst, fs.constants.COPYFILE_FICLONE_FORCE);
    return;
  } catch {
    fs.rmSync(dst, { force: true }); // no reflink here: copy by hand
  }
  const size = fs.statSync(src).size;
  const inFd = fs.openSync(src, 'r');
  let outFd: number | null = null;
  try {
    outFd = fs.openSync(dst, 'wx', 0o644);
    const buf = Buffer.allocUnsafe(CHUNK);
    for (let pos = 0; pos < size; pos += CHUNK) {
      const n = fs.readSync(inFd, buf, 0, Math.min(CHUNK, size - pos), pos);
      const chunk = buf.subarray(0, n);
      if (isZero(chunk)) continue;
      for (let p = 0; p < n; ) {
        if (isZero(chunk.subarray(p, Math.min(n, p + PAGE)))) {
          p += PAGE;
          continue;
        }
        let q = p + PAGE;
        while (q < n && !isZero(chunk.subarray(q, Math.min(n, q + PAGE)))) q += PAGE;
        const run = chunk.subarray(p, Math.min(n, q));
        let done = 0;
        while (done < run.length) done += fs.writeSync(outFd, run, done, run.length - done, pos + p + done);
        p = q;
      }
    }
    fs.ftruncateSync(outFd, size);
    fs.fsyncSync(outFd);
  } finally {
    fs.closeSync(inFd);
    if (outFd !== null) fs.closeSync(outFd);
  }
}
