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

/** Ascending LBNs, each with the interval file (an index into the overlay's files) and the entry in it of its version. */
interface Run {
  lbns: Float64Array;
  files: Uint32Array;
  entries: Uint32Array;
}

function runOf(ix: IntervalIndex, file: number): Run {
  const n = ix.lbns.length;
  const entries = new Uint32Array(n);
  for (let e = 0; e < n; e++) entries[e] = e;
  return { lbns: ix.lbns, files: new Uint32Array(n).fill(file), entries };
}

/** The versions of `older` and `newer` merged: one per LBN, newer's where both hold it. */
function merge(older: Run, newer: Run): Run {
  const cap = older.lbns.length + newer.lbns.length;
  const out: Run = { lbns: new Float64Array(cap), files: new Uint32Array(cap), entries: new Uint32Array(cap) };
  let i = 0;
  let j = 0;
  let k = 0;
  const take = (r: Run, at: number): void => {
    out.lbns[k] = r.lbns[at];
    out.files[k] = r.files[at];
    out.entries[k] = r.entries[at];
    k++;
  };
  while (i < older.lbns.length && j < newer.lbns.length) {
    const a = older.lbns[i];
    const b = newer.lbns[j];
    if (a < b) take(older, i++);
    else {
      take(newer, j++);
      if (a === b) i++;
    }
  }
  while (i < older.lbns.length) take(older, i++);
  while (j < newer.lbns.length) take(newer, j++);
  return { lbns: out.lbns.subarray(0, k), files: out.files.subarray(0, k), entries: out.entries.subarray(0, k) };
}

/**
 * The newest version of every LBN the intervals in `indexes` (oldest first) hold: cost ∝
 * their index entries, no data read. Each index is in ascending LBN order, so they are
 * merged pairwise (log2 of their number of passes) into typed arrays: 16 bytes per block,
 * where a map of the blocks outgrew memory (and its 2^24 entries) on a resync of a large disk.
 * Versions are addressed by position in the ascending list (0 … blockCount - 1).
 */
export class Overlay {
  private readonly run: Run;

  constructor(readonly indexes: IntervalIndex[]) {
    let runs = indexes.map(runOf);
    while (runs.length > 1) {
      const next: Run[] = [];
      for (let p = 0; p < runs.length; p += 2) next.push(p + 1 < runs.length ? merge(runs[p], runs[p + 1]) : runs[p]);
      runs = next;
    }
    this.run = runs[0] ?? { lbns: new Float64Array(0), files: new Uint32Array(0), entries: new Uint32Array(0) };
  }

  get blockCount(): number {
    return this.run.lbns.length;
  }

  /** The LBNs held, ascending (position k: the k-th version). */
  sortedLbns(): Float64Array {
    return this.run.lbns;
  }

  /** Position of the first LBN held at or after `lbn` (blockCount when none). */
  positionOf(lbn: number): number {
    const l = this.run.lbns;
    let lo = 0;
    let hi = l.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (l[mid] < lbn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The LBNs held in [first, end), ascending. */
  lbnsIn(first: number, end: number): Float64Array {
    return this.run.lbns.subarray(this.positionOf(first), this.positionOf(end));
  }

  /** Reads the version at position `k` into `out` (zero-filled for a zero block), from `fds` (one per file, opened by openFiles()). */
  readAt(k: number, out: Buffer, fds: number[]): void {
    const file = this.run.files[k];
    const entry = this.run.entries[k];
    const ix = this.indexes[file];
    const off = ix.offsets[entry];
    if (off < 0) out.fill(0);
    else readIntervalBlock(fds[file], ix.file, this.run.lbns[k], off, ix.crcs[entry], out);
  }

  /** Which interval (an index into `indexes`) and which entry of its index the version at position `k` is. */
  versionAt(k: number): { file: number; entry: number } {
    return { file: this.run.files[k], entry: this.run.entries[k] };
  }

  /** Whether the version at position `k` is a zero block. */
  isZeroAt(k: number): boolean {
    return this.indexes[this.run.files[k]].offsets[this.run.entries[k]] < 0;
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
      if (overlay.isZeroAt(i)) {
        let j = i + 1;
        while (j < lbns.length && lbns[j] === lbns[j - 1] + 1 && overlay.isZeroAt(j)) j++;
        unmapLogicalBlocks(vol, first, lbns[j - 1] + 1);
        sinceCp += j - i;
        onBlocks(j - i);
        i = j;
      } else {
        const blocks: Buffer[] = [];
        let j = i;
        while (j < lbns.length && blocks.length < RUN_BLOCKS && lbns[j] === first + blocks.length && !overlay.isZeroAt(j)) {
          const b = Buffer.allocUnsafe(bs);
          overlay.readAt(j, b, fds);
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
