// Writing chosen block versions onto a volume: the newest version of each LBN among a run
// of intervals (restore as of a time), or one interval's blocks (a fold into the base).
// Reads each chosen block once, checks its checksum, and writes runs of consecutive LBNs
// with one call; zero blocks are unmapped. The caller commits.
import fs from 'node:fs';
import { fromSystemError } from '../core/errors.js';
import { unmapLogicalBlocks, writeLogicalBlocks } from '../volume/logical-io.js';
import type { Volume } from '../volume/volume.js';
import { entryBlocks, readIntervalBlock, type IntervalIndex } from './interval-file.js';

/** Blocks written between two CPs of a long overlay: bounds the metadata held dirty. */
export const OVERLAY_CP_BLOCKS = 1 << 14;
const RUN_BLOCKS = 256;
/** Blocks of a run of zeros unmapped between two checks of what is dirty. */
const UNMAP_STEP_BLOCKS = 1 << 16;

/**
 * Extents in ascending LBN order, never overlapping: extent k is `counts[k]` blocks from
 * `lbns[k]`, the version of entry `entries[k]` of interval file `files[k]` (an index into
 * the overlay's files). A data entry is one block; a run of zeros may be cut into pieces
 * where newer versions lie over parts of it.
 */
interface Run {
  lbns: Float64Array;
  counts: Float64Array;
  files: Uint32Array;
  entries: Uint32Array;
}

function runOf(ix: IntervalIndex, file: number): Run {
  const n = ix.lbns.length;
  const entries = new Uint32Array(n);
  const counts = new Float64Array(n);
  for (let e = 0; e < n; e++) {
    entries[e] = e;
    counts[e] = entryBlocks(ix, e);
  }
  return { lbns: ix.lbns, counts, files: new Uint32Array(n).fill(file), entries };
}

/** The versions of `older` and `newer` merged: newer's wherever it holds a block, older's (cut to fit) elsewhere. */
function merge(older: Run, newer: Run): Run {
  const O = older.lbns.length;
  const N = newer.lbns.length;
  // each newer extent cuts at most one older extent in two: one piece more
  const cap = O + 2 * N;
  const out: Run = { lbns: new Float64Array(cap), counts: new Float64Array(cap), files: new Uint32Array(cap), entries: new Uint32Array(cap) };
  let k = 0;
  const put = (r: Run, at: number, lbn: number, count: number): void => {
    out.lbns[k] = lbn;
    out.counts[k] = count;
    out.files[k] = r.files[at];
    out.entries[k] = r.entries[at];
    k++;
  };
  let j = 0;
  for (let i = 0; i < O; i++) {
    let s = older.lbns[i];
    const e = s + older.counts[i];
    while (s < e) {
      // the newer extents that end by s come first
      while (j < N && newer.lbns[j] + newer.counts[j] <= s) put(newer, j, newer.lbns[j], newer.counts[j]), j++;
      if (j < N && newer.lbns[j] < e) {
        // newer extent j lies over [s, e) from its start on: older keeps what comes before it
        if (newer.lbns[j] > s) put(older, i, s, newer.lbns[j] - s);
        s = newer.lbns[j] + newer.counts[j];
      } else {
        put(older, i, s, e - s);
        s = e;
      }
    }
  }
  for (; j < N; j++) put(newer, j, newer.lbns[j], newer.counts[j]);
  return { lbns: out.lbns.subarray(0, k), counts: out.counts.subarray(0, k), files: out.files.subarray(0, k), entries: out.entries.subarray(0, k) };
}

/**
 * The newest version of every LBN the intervals in `indexes` (oldest first) hold: cost ∝
 * their index entries, no data read. Each index is in ascending LBN order, so they are
 * merged pairwise (log2 of their number of passes) into typed arrays of extents: 24 bytes
 * per data block or run of zeros (a guest's trim of a whole disk is one extent), where a
 * map of the blocks outgrew memory (and its 2^24 entries) on a resync of a large disk.
 * Versions are addressed by extent, in ascending order (0 … extentCount - 1).
 */
export class Overlay {
  private readonly run: Run;
  /** Blocks held (the extents' counts summed). */
  readonly blockCount: number;

  constructor(readonly indexes: IntervalIndex[]) {
    let runs = indexes.map(runOf);
    while (runs.length > 1) {
      const next: Run[] = [];
      for (let p = 0; p < runs.length; p += 2) next.push(p + 1 < runs.length ? merge(runs[p], runs[p + 1]) : runs[p]);
      runs = next;
    }
    this.run = runs[0] ?? { lbns: new Float64Array(0), counts: new Float64Array(0), files: new Uint32Array(0), entries: new Uint32Array(0) };
    let n = 0;
    for (const c of this.run.counts) n += c;
    this.blockCount = n;
  }

  get extentCount(): number {
    return this.run.lbns.length;
  }

  /** The first LBN of extent `k`. */
  startAt(k: number): number {
    return this.run.lbns[k];
  }

  /** The blocks of extent `k` (1 but for runs of zeros). */
  countAt(k: number): number {
    return this.run.counts[k];
  }

  /** The first extent that ends after `lbn` (holding it, or the next one held; extentCount when none). */
  positionOf(lbn: number): number {
    const { lbns, counts } = this.run;
    let lo = 0;
    let hi = lbns.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (lbns[mid] + counts[mid] <= lbn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Calls fn for each extent that holds blocks of [first, end), cut to that range: its position, first LBN and blocks. */
  eachIn(first: number, end: number, fn: (k: number, lbn: number, count: number) => void): void {
    const { lbns, counts } = this.run;
    for (let k = this.positionOf(first); k < lbns.length && lbns[k] < end; k++) {
      const s = Math.max(lbns[k], first);
      fn(k, s, Math.min(lbns[k] + counts[k], end) - s);
    }
  }

  /** Per block of [first, first + n): 1 where the overlay holds a version, 0 where the base's stands; and how many it holds. */
  heldIn(first: number, n: number): { held: Uint8Array; count: number } {
    const held = new Uint8Array(n);
    let count = 0;
    this.eachIn(first, first + n, (_k, lbn, c) => {
      held.fill(1, lbn - first, lbn - first + c);
      count += c;
    });
    return { held, count };
  }

  /** Whether the overlay holds a data block (not zeros) in [first, end). */
  holdsDataIn(first: number, end: number): boolean {
    for (let k = this.positionOf(first); k < this.run.lbns.length && this.run.lbns[k] < end; k++) if (!this.isZeroAt(k)) return true;
    return false;
  }

  /** Whether runs of zeros cover every block of [first, end). */
  zeroesAll(first: number, end: number): boolean {
    let at = first;
    for (let k = this.positionOf(first); at < end && k < this.run.lbns.length && this.run.lbns[k] <= at && this.isZeroAt(k); k++) at = this.run.lbns[k] + this.run.counts[k];
    return at >= end;
  }

  /** Reads the version of data extent `k` into `out` (zero-filled for zeros), from `fds` (one per file, opened by openFiles()). */
  readAt(k: number, out: Buffer, fds: number[]): void {
    const file = this.run.files[k];
    const entry = this.run.entries[k];
    const ix = this.indexes[file];
    const off = ix.offsets[entry];
    if (off < 0) out.fill(0);
    else readIntervalBlock(fds[file], ix.file, this.run.lbns[k], off, ix.crcs[entry], out);
  }

  /** Which interval (an index into `indexes`) and which entry of its index extent `k` is. */
  versionAt(k: number): { file: number; entry: number } {
    return { file: this.run.files[k], entry: this.run.entries[k] };
  }

  /** Whether extent `k` reads as zeros. */
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
  const n = overlay.extentCount;
  const fds = overlay.openFiles();
  try {
    let sinceCp = 0;
    for (let i = 0; i < n; ) {
      const first = overlay.startAt(i);
      if (overlay.isZeroAt(i)) {
        // runs of zeros that meet: unmapped together, in steps (what they unmap is committed
        // every OVERLAY_CP_BLOCKS; what was unmapped already costs a walk of the map's nodes)
        let end = first + overlay.countAt(i);
        let j = i + 1;
        while (j < n && overlay.startAt(j) === end && overlay.isZeroAt(j)) end += overlay.countAt(j++);
        for (let at = first; at < end; ) {
          const to = Math.min(end, at + UNMAP_STEP_BLOCKS);
          sinceCp += unmapLogicalBlocks(vol, at, to);
          onBlocks(to - at);
          at = to;
          if (sinceCp >= OVERLAY_CP_BLOCKS) {
            vol.commit();
            sinceCp = 0;
          }
        }
        i = j;
      } else {
        const blocks: Buffer[] = [];
        let j = i;
        while (j < n && blocks.length < RUN_BLOCKS && overlay.startAt(j) === first + blocks.length && !overlay.isZeroAt(j)) {
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
  return overlay.blockCount;
}
