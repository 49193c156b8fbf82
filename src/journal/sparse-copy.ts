// Copying a base volume for a restore without filling its holes or reading its free
// space: a base has room for four times its disk and is mostly unallocated. A reflink
// (FICLONE) shares the blocks where the file system can; otherwise the root records, the
// snapshot table and the planes in use (the active one, mark-on-allocate, the snapshots')
// are copied page by page, skipping zero pages, and of the VBN space only the blocks some
// plane holds: the cost follows what the base holds, not its size (the planes of the free
// snapshot slots, most of a large volume's metadata, are holes: 8 GiB of a 256 GiB disk's,
// read as zeros for 15 s before).
import fs from 'node:fs';
import { isZero } from '../volume/zero.js';
import { PLANE_ACTIVE, PLANE_MOA } from '../volume/layout.js';
import type { Volume } from '../volume/volume.js';

const CHUNK = 1 << 20;
const PAGE = 4096;
/** Blocks read and written at once. */
const RUN_BLOCKS = 256;

function writeAll(fd: number, buf: Buffer, position: number): void {
  let done = 0;
  while (done < buf.length) done += fs.writeSync(fd, buf, done, buf.length - done, position + done);
}

/** Copies bytes [start, end) of `inFd` to `outFd`, leaving zero pages as holes. */
function copyRangeSparse(inFd: number, outFd: number, start: number, end: number): void {
  const buf = Buffer.allocUnsafe(CHUNK);
  for (let pos = start; pos < end; pos += CHUNK) {
    const n = fs.readSync(inFd, buf, 0, Math.min(CHUNK, end - pos), pos);
    const chunk = buf.subarray(0, n);
    if (isZero(chunk)) continue;
    for (let p = 0; p < n; ) {
      if (isZero(chunk.subarray(p, Math.min(n, p + PAGE)))) {
        p += PAGE;
        continue;
      }
      let q = p + PAGE;
      while (q < n && !isZero(chunk.subarray(q, Math.min(n, q + PAGE)))) q += PAGE;
      writeAll(outFd, chunk.subarray(p, Math.min(n, q)), pos + p);
      p = q;
    }
  }
}

/** Copies the volume `vol` (opened, its lock held, at a clean CP) to the new file `dst`. */
export function copyVolumeSparse(vol: Volume, dst: string): void {
  try {
    fs.copyFileSync(vol.path, dst, fs.constants.COPYFILE_FICLONE_FORCE);
    return;
  } catch {
    fs.rmSync(dst, { force: true }); // no reflink here: copy by hand
  }
  const size = fs.statSync(vol.path).size;
  const inFd = fs.openSync(vol.path, 'r');
  let outFd: number | null = null;
  try {
    outFd = fs.openSync(dst, 'wx', 0o644);
    const layout = vol.layout;
    const bs = layout.blockSize;
    if (vol.rootRecord.journalCount !== 0) {
      // a CP journal not yet applied lives in free VBNs: copy everything there is
      copyRangeSparse(inFd, outFd, 0, size);
    } else {
      copyRangeSparse(inFd, outFd, 0, layout.planeStart * bs);
      const planes = [PLANE_ACTIVE, ...PLANE_MOA, ...vol.snapshots().map((s) => layout.snapshotPlane(s.slot))];
      for (const p of planes) copyRangeSparse(inFd, outFd, layout.planeBlock(p, 0) * bs, layout.planeBlock(p, layout.planeBlocks) * bs);
      const buf = Buffer.allocUnsafe(RUN_BLOCKS * bs);
      const perChunk = layout.wordsPerPlaneBlock * 32;
      let runStart = -1;
      let runLength = 0;
      const flush = () => {
        if (runLength === 0) return;
        const part = buf.subarray(0, runLength * bs);
        vol.file.read(part, layout.vbnOffset(runStart));
        writeAll(outFd!, part, layout.vbnOffset(runStart));
        runLength = 0;
      };
      for (let c = 0; c < layout.planeBlocks; c++) {
        const words = vol.occupiedWords(c);
        for (let i = 0; i < words.length; i++) {
          if (words[i] === 0) continue;
          for (let bit = 0; bit < 32; bit++) {
            if ((words[i] & (1 << bit)) === 0) continue;
            const vbn = c * perChunk + i * 32 + bit;
            if (vbn >= layout.nblocks) break;
            if (runLength > 0 && vbn === runStart + runLength && runLength < RUN_BLOCKS) runLength++;
            else {
              flush();
              runStart = vbn;
              runLength = 1;
            }
          }
        }
      }
      flush();
    }
    fs.ftruncateSync(outFd, size);
    fs.fsyncSync(outFd);
  } finally {
    fs.closeSync(inFd);
    if (outFd !== null) fs.closeSync(outFd);
  }
}
