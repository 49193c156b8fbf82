// Byte-addressed reads and writes of the logical disk, for clients that do not think in
// blocks (the NBD server). Built on Volume's public methods only. Costs: one read per run
// of consecutive VBNs, one vectored write per run of consecutive new VBNs, no per-block
// syscalls; a partial block at either end of a write is read, merged and written whole.
// Changes become durable at the next CP (vol.commit()), like every other write.
import { InvalidInputError } from '../core/errors.js';
import type { LogicalMap } from './logical-map.js';
import { isZero, type Volume } from './volume.js';

/** IOV_MAX on Linux: buffers one writev may take. */
const MAX_IOV = 1024;
/** LBNs unmapped per pass of a large trim: bounds the (lbn, vbn) pairs held at once. */
const UNMAP_PASS_BLOCKS = 1 << 16;

function checkRange(vol: Volume, offset: number, length: number): void {
  const size = vol.rootRecord.logicalSize;
  if (!Number.isSafeInteger(offset) || offset < 0 || length < 0 || offset + length > size) {
    throw new InvalidInputError(`${vol.path}: bytes ${offset}..${offset + length} are outside the logical disk (${size} bytes)`);
  }
}

/** A piece of a read: `into` (a part of the caller's buffer) is read from file byte `position`. */
export interface LogicalReadRun {
  into: Buffer;
  position: number;
}

/** A piece of the logical disk: bytes [offset, offset + length) at file byte `position`, or a hole (position -1) that reads as zeros. */
export interface LogicalExtent {
  offset: number;
  length: number;
  position: number;
}

/**
 * The pieces of `length` bytes of the logical disk at byte `offset` through `map`: each
 * run of consecutive VBNs is one piece, each run of unmapped blocks one hole. Reads map
 * nodes only.
 */
export function planLogicalExtents(vol: Volume, map: LogicalMap, offset: number, length: number): LogicalExtent[] {
  const out: LogicalExtent[] = [];
  if (length === 0) return out;
  checkRange(vol, offset, length);
  const bs = vol.blockSize;
  const end = offset + length;
  const first = Math.floor(offset / bs);
  const last = Math.ceil(end / bs);
  const push = (lbn: number, count: number, vbn: number): void => {
    const lo = Math.max(offset, lbn * bs);
    const hi = Math.min(end, (lbn + count) * bs);
    out.push({ offset: lo, length: hi - lo, position: vbn === 0 ? -1 : vol.layout.vbnOffset(vbn) + (lo - lbn * bs) });
  };
  // the mapped blocks, from the map's nodes (subtrees that map nothing are passed over):
  // a run of them at consecutive VBNs is one extent, the holes between them one each
  let runLbn = first;
  let runVbn = 0;
  let count = 0;
  map.walkRange(first, last, (lbn, vbn) => {
    if (count > 0 && lbn === runLbn + count && vbn === runVbn + count) {
      count++;
      return;
    }
    const holeFrom = count > 0 ? runLbn + count : runLbn;
    if (count > 0) push(runLbn, count, runVbn);
    if (lbn > holeFrom) push(holeFrom, lbn - holeFrom, 0);
    runLbn = lbn;
    runVbn = vbn;
    count = 1;
  });
  const tail = count > 0 ? runLbn + count : runLbn;
  if (count > 0) push(runLbn, count, runVbn);
  if (tail < last) push(tail, last - tail, 0);
  return out;
}

/**
 * Plans a read of `out.length` bytes of the logical disk at byte `offset` through `map`
 * (the active file system's, or a snapshot's from vol.mapOf): unmapped blocks are
 * zero-filled in `out` now, and each run of consecutive VBNs becomes one piece to read
 * from the volume file. For callers that read asynchronously; readLogicalBytes reads at once.
 */
export function planLogicalRead(vol: Volume, map: LogicalMap, offset: number, out: Buffer): LogicalReadRun[] {
  const runs: LogicalReadRun[] = [];
  for (const e of planLogicalExtents(vol, map, offset, out.length)) {
    const into = out.subarray(e.offset - offset, e.offset - offset + e.length);
    if (e.position < 0) into.fill(0);
    else runs.push({ into, position: e.position });
  }
  return runs;
}

/**
 * Reads `out.length` bytes of the logical disk at byte `offset` through `map`. Unmapped
 * blocks read as zeros; each run of consecutive VBNs is one read.
 */
export function readLogicalBytes(vol: Volume, map: LogicalMap, offset: number, out: Buffer): void {
  for (const run of planLogicalRead(vol, map, offset, out)) vol.file.read(run.into, run.position);
}

/**
 * Writes `data` at byte `offset` of the active file system. Whole blocks go to newly
 * allocated VBNs (write-anywhere), except blocks already written since the last CP, which
 * are rewritten where they are, and blocks whose data equals what they hold, which stay
 * where they are untouched (a no-op rewrite: no allocation, no mark-on-allocate bit, so
 * the next incremental does not carry them); all-zero blocks are unmapped. When the volume has no room
 * for the new blocks it throws VolumeFullError before changing anything.
 */
export function writeLogicalBytes(vol: Volume, offset: number, data: Buffer): void {
  if (data.length === 0) return;
  checkRange(vol, offset, data.length);
  const bs = vol.blockSize;
  const end = offset + data.length;
  const first = Math.floor(offset / bs);
  const n = Math.ceil(end / bs) - first;
  const blocks = new Array<Buffer>(n);
  for (let k = 0; k < n; k++) {
    const lo = (first + k) * bs;
    if (lo >= offset && lo + bs <= end) {
      blocks[k] = data.subarray(lo - offset, lo - offset + bs);
      continue;
    }
    // a partial block (only the first and the last can be): merge into its current content
    const merged = Buffer.allocUnsafe(bs);
    readLogicalBytes(vol, vol.map, lo, merged);
    const from = Math.max(lo, offset);
    data.copy(merged, from - lo, from - offset, Math.min(lo + bs, end) - offset);
    blocks[k] = merged;
  }
  writeLogicalBlocks(vol, first, blocks);
}

/**
 * Makes `length` bytes at `offset` read as zeros: whole blocks are unmapped (freed at the
 * next CP unless a snapshot holds them), partial blocks at either end are zero-filled.
 * Costs what is mapped in the range, not its length. Returns the blocks unmapped.
 */
export function zeroLogicalBytes(vol: Volume, offset: number, length: number): number {
  if (length === 0) return 0;
  checkRange(vol, offset, length);
  const bs = vol.blockSize;
  const end = offset + length;
  const from = Math.ceil(offset / bs);
  const to = Math.floor(end / bs);
  if (from > to) {
    // inside one block
    writeLogicalBytes(vol, offset, Buffer.alloc(length));
    return 0;
  }
  if (offset < from * bs) writeLogicalBytes(vol, offset, Buffer.alloc(from * bs - offset));
  if (end > to * bs) writeLogicalBytes(vol, to * bs, Buffer.alloc(end - to * bs));
  return unmapLogicalBlocks(vol, from, to);
}

/** Unmaps the logical blocks [from, to) of the active file system. Returns how many were mapped. */
export function unmapLogicalBlocks(vol: Volume, from: number, to: number): number {
  const zero = Buffer.alloc(vol.blockSize);
  let unmapped = 0;
  const lbns: number[] = [];
  const vbns: number[] = [];
  for (let start = from; start < to; start += UNMAP_PASS_BLOCKS) {
    lbns.length = 0;
    vbns.length = 0;
    vol.map.walkRange(start, Math.min(to, start + UNMAP_PASS_BLOCKS), (l, v) => {
      lbns.push(l);
      vbns.push(v);
    });
    for (let i = 0; i < lbns.length; i++) vol.writeLogical(lbns[i], zero, { vbn: vbns[i], zero: true });
    unmapped += lbns.length;
  }
  return unmapped;
}

const SKIP = 0;
const UNMAP = 1;
const IN_PLACE = 2;
const NEW = 3;
/** Mapped to a block of an earlier CP: NEW, unless its data is already there. */
const MAYBE_SAME = 4;

/** Bytes of old blocks read at once to compare rewrites against. */
const COMPARE_READ_BYTES = 1 << 20;
let compareScratch: Buffer | null = null;

/**
 * Turns MAYBE_SAME blocks into SKIP when the block they are mapped to holds the same
 * bytes, else into NEW. Old blocks at consecutive VBNs are read with one read (from the
 * page cache, mostly: a client rewriting a disk has just read it, or wrote it before).
 * Returns how many became NEW.
 */
function settleRewrites(vol: Volume, blocks: Buffer[], olds: number[], kind: Uint8Array): number {
  const bs = vol.blockSize;
  const most = Math.max(1, Math.floor(COMPARE_READ_BYTES / bs));
  if (!compareScratch || compareScratch.length < most * bs) compareScratch = Buffer.allocUnsafe(most * bs);
  const scratch = compareScratch;
  let changed = 0;
  const n = blocks.length;
  for (let k = 0; k < n; ) {
    if (kind[k] !== MAYBE_SAME) {
      k++;
      continue;
    }
    let end = k + 1;
    while (end < n && end - k < most && kind[end] === MAYBE_SAME && olds[end] === olds[end - 1] + 1) end++;
    const run = scratch.subarray(0, (end - k) * bs);
    vol.file.read(run, vol.layout.vbnOffset(olds[k]));
    for (let j = k; j < end; j++) {
      if (blocks[j].equals(run.subarray((j - k) * bs, (j - k + 1) * bs))) kind[j] = SKIP;
      else {
        kind[j] = NEW;
        changed++;
      }
    }
    k = end;
  }
  return changed;
}

/**
 * Writes whole blocks at consecutive LBNs from `first` (each buffer one block). New VBNs
 * are all allocated first, so a full volume refuses the write before any data block
 * changes, and consecutive VBNs are written with one writev. The map's own blocks are
 * taken as it grows: when that fails, blocks written in place and unmapped before it
 * stay so (each block old or new, as a disk's failed write; README, serve nbd).
 */
export function writeLogicalBlocks(vol: Volume, first: number, blocks: Buffer[]): void {
  const n = blocks.length;
  const olds = new Array<number>(n);
  const kind = new Uint8Array(n);
  let needed = 0;
  for (let k = 0; k < n; k++) {
    const old = vol.map.lookup(first + k);
    olds[k] = old;
    if (isZero(blocks[k])) kind[k] = old === 0 ? SKIP : UNMAP;
    else if (old !== 0 && vol.isFresh(old)) kind[k] = IN_PLACE;
    else if (old !== 0) kind[k] = MAYBE_SAME;
    else {
      kind[k] = NEW;
      needed++;
    }
  }
  needed += settleRewrites(vol, blocks, olds, kind);
  const fresh: number[] = [];
  try {
    while (fresh.length < needed) fresh.push(vol.allocate());
  } catch (err) {
    for (const v of fresh) vol.release(v);
    throw err;
  }

  // data: gather blocks whose target VBNs are consecutive into one writev
  const targets = new Array<number>(n);
  let bufs: Buffer[] = [];
  let runStart = 0;
  let runNext = 0;
  const flushRun = () => {
    if (bufs.length) vol.file.writev(bufs, vol.layout.vbnOffset(runStart));
    bufs = [];
  };
  let j = 0;
  for (let k = 0; k < n; k++) {
    if (kind[k] !== NEW && kind[k] !== IN_PLACE) continue;
    const t = kind[k] === NEW ? fresh[j++] : olds[k];
    targets[k] = t;
    if (bufs.length === 0 || t !== runNext || bufs.length >= MAX_IOV) {
      flushRun();
      runStart = t;
    }
    bufs.push(blocks[k]);
    runNext = t + 1;
  }
  flushRun();

  // map: point the LBNs at their new blocks, release the old ones
  let mapped = 0;
  try {
    for (let k = 0; k < n; k++) {
      if (kind[k] === UNMAP) vol.writeLogical(first + k, blocks[k], { vbn: olds[k], zero: true });
      else if (kind[k] === NEW) {
        vol.map.set(first + k, targets[k]);
        if (olds[k] !== 0) vol.release(olds[k]);
        else vol.noteMapped(1);
      }
      mapped = k + 1;
    }
  } catch (err) {
    // the map could not grow (a full volume): blocks not mapped yet go back
    for (let k = mapped; k < n; k++) if (kind[k] === NEW) vol.release(targets[k]);
    throw err;
  }
}
