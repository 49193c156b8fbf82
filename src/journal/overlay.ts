// Writing chosen block versions onto a volume: the newest version of each LBN among a run
// of intervals (restore as of a time), or one interval's blocks (a fold into the base).
// Reads each chosen block once, checks its checksum, and writes runs of consecutive LBNs
// with one call; zero blocks are unmapped. The caller commits.
import fs from 'node:fs';
import { fromSystemError } from '../core/errors.js';
import { unmapLogicalBlocks, writeLogicalBlocks } from '../volume/logical-io.js';
import type { Volume } from '../volume/volume.js';
import { readIntervalBlock, type IntervalIndex } from './interval-file.js';

/** Blocks written between two CPs of a long overlay: bounds the metadata held dirty. */
export const OVERLAY_CP_BLOCKS = 1 << 14;
const RUN_BLOCKS = 256;

/** The version of one LBN an overlay takes: entry `entry` of interval file `file` (an index into the overlay's files). */
export interface OverlayEntry {
  file: number;
  entry: number;
}

/** The newest version of every LBN the intervals in `indexes` (oldest first) hold: cost ∝ their index entries, no data read. */
export class Overlay {
  readonly versions = new Map<number, OverlayEntry>();
  constructor(readonly indexes: IntervalIndex[]) {
    indexes.forEach((ix, file) => {
      for (let entry = 0; entry < ix.lbns.length; entry++) this.versions.set(ix.lbns[entry], { file, entry });
    });
  }

  get blockCount(): number {
    return this.versions.size;
  }

  /** The LBNs held, ascending. */
  sortedLbns(): number[] {
    return [...this.versions.keys()].sort((a, b) => a - b);
  }

  /** Reads the version of `lbn` into `out` (zero-filled for a zero block), from `fds` (one per file, opened by openFiles()). */
  read(lbn: number, out: Buffer, fds: number[]): void {
    const v = this.versions.get(lbn)!;
    const ix = this.indexes[v.file];
    const off = ix.offsets[v.entry];
    if (off < 0) out.fill(0);
    else readIntervalBlock(fds[v.file], ix.file, lbn, off, ix.crcs[v.entry], out);
  }

  isZero(lbn: number): boolean {
    const v = this.versions.get(lbn)!;
    return this.indexes[v.file].offsets[v.entry] < 0;
  }

  openFiles(): number[] {
    const fds: number[] = [];
    try {
      for (const ix of this.indexes) fds.push(fs.openSync(ix.file, 'r'));
    } catch (err) {
      for (const fd of fds) fs.closeSync(fd);
      throw fromSystemError(err, this.indexes[fds.length].file, 'opening an interval file');
    }
    return fds;
  }
}

/** Writes every version `overlay` holds onto `vol`'s active file system, committing every OVERLAY_CP_BLOCKS blocks and at the end. Returns the blocks written. */
export function applyOverlay(vol: Volume, overlay: Overlay, onBlocks: (n: number) => void = () => {}): number {
  const bs = vol.blockSize;
  const lbns = overlay.sortedLbns();
  const fds = overlay.openFiles();
  try {
    let sinceCp = 0;
    for (let i = 0; i < lbns.length; ) {
      const first = lbns[i];
      if (overlay.isZero(first)) {
        let j = i + 1;
        while (j < lbns.length && lbns[j] === lbns[j - 1] + 1 && overlay.isZero(lbns[j])) j++;
        unmapLogicalBlocks(vol, first, lbns[j - 1] + 1);
        sinceCp += j - i;
        onBlocks(j - i);
        i = j;
      } else {
        const blocks: Buffer[] = [];
        let j = i;
        while (j < lbns.length && blocks.length < RUN_BLOCKS && lbns[j] === first + blocks.length && !overlay.isZero(lbns[j])) {
          const b = Buffer.allocUnsafe(bs);
          overlay.read(lbns[j], b, fds);
          blocks.push(b);
          j++;
        }
        writeLogicalBlocks(vol, first, blocks);
        sinceCp += blocks.length;
        onBlocks(blocks.length);
        i = j;
      }
      if (sinceCp >= OVERLAY_CP_BLOCKS) {
        vol.commit();
        sinceCp = 0;
      }
    }
    vol.commit();
  } finally {
    for (const fd of fds) fs.closeSync(fd);
  }
  return lbns.length;
}
