// Whether a mirror destination still holds what it acknowledged of a stopped transfer
// (apply-transfer.ts). On resume the source sends the acknowledged records as ghosts (their
// VBNs or plane chunks and their crc32, without the block contents): the destination reads
// those blocks back from where it put them (the volume, a free snapshot slot, the stage
// file) and checks them against the crc32. The resume file says where the records went;
// only this says that they are still there: a volume at NAME copied back over the mirror
// from before the transfer (the same file, uuid and CP) has none of them, and resuming
// into it built a damaged mirror.
import fs from 'node:fs';
import { applyMapDelta, type MapDelta } from '../format/image-stream.js';
import type { Volume } from '../volume/volume.js';
import { recordCrc } from './records.js';
import { crc32 } from '../format/crc32.js';

/** Where a block the old state holds went instead: its offset in the stage file (undefined: in place). */
export type StagedAt = (vbn: number) => number | undefined;

/** Reads block `vbn` as the transfer wrote it: from the stage file when staged, else in place. */
function readWritten(vol: Volume, vbn: number, stagedAt: StagedAt, stageFd: number, buf: Buffer): void {
  const off = stagedAt(vbn);
  if (off === undefined) vol.readBlock(vbn, buf);
  else if (fs.readSync(stageFd, buf, 0, buf.length, off) !== buf.length) buf.fill(0); // cut short: cannot match
}

/** A DATA ghost (`ghost`: its VBN list) holds when its VBN list and the blocks read back have the record's crc32. */
export function dataHolds(vol: Volume, ghost: Buffer, vbns: number[], crc: number, stagedAt: StagedAt, stageFd: number): boolean {
  const bs = vol.blockSize;
  const buf = Buffer.alloc(bs * Math.min(vbns.length, RUN_BLOCKS));
  let c = recordCrc(ghost);
  for (let k = 0; k < vbns.length; ) {
    if (stagedAt(vbns[k]) !== undefined) {
      const one = buf.subarray(0, bs);
      readWritten(vol, vbns[k++], stagedAt, stageFd, one);
      c = crc32(one, c);
      continue;
    }
    // a run of consecutive VBNs in place: one read
    let n = 1;
    while (k + n < vbns.length && n < RUN_BLOCKS && vbns[k + n] === vbns[k] + n && stagedAt(vbns[k + n]) === undefined) n++;
    const run = buf.subarray(0, n * bs);
    vol.file.read(run, vol.layout.vbnOffset(vbns[k]));
    c = crc32(run, c);
    k += n;
  }
  return c >>> 0 === crc >>> 0;
}

/** The most blocks read back at once. */
const RUN_BLOCKS = 256;

/** A PLANE ghost (`ghost`: its snapshot index and chunks) holds when the slot's plane blocks read back give the record's crc32. */
export function planeHolds(vol: Volume, ghost: Buffer, slot: number, chunks: number[], crc: number): boolean {
  const plane = vol.layout.snapshotPlane(slot);
  let c = recordCrc(ghost);
  for (const chunk of chunks) {
    const w = vol.planeWords(plane, chunk);
    c = crc32(new Uint8Array(w.buffer, w.byteOffset, w.byteLength), c);
  }
  return c >>> 0 === crc >>> 0;
}

/** A map node a MAPDELTA ghost stands for holds when it reads back as its base with the differences applied. */
export function mapNodeHolds(vol: Volume, d: MapDelta, stagedAt: StagedAt, stageFd: number): boolean {
  const want = Buffer.alloc(vol.blockSize);
  vol.readBlock(d.base, want);
  applyMapDelta(want, d);
  const have = Buffer.alloc(vol.blockSize);
  readWritten(vol, d.vbn, stagedAt, stageFd, have);
  return want.equals(have);
}
