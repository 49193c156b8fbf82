// Collects journal records into one interval: for each LBN only where its last version
// lies in the journal (or that it reads as zeros now), so a block rewritten a thousand
// times in an interval is read and shipped once. Memory is one map entry per distinct
// block written, with its data up to HELD_BYTES per interval (past that, the data is read
// from the segment files when the interval is shipped), and one pair of numbers per trim
// or write-zeroes: a guest's trim of a whole disk is one run, shipped as one entry.
//
// A segment the interval reads from is opened when its first block is left there, and
// stays open until the interval is released: an overflow in the server deletes every
// segment but the new one, and an open segment still reads after it is deleted. One
// deleted before the builder could open it (between the reader's read and the builder's
// open) makes the interval unshippable: its blocks throw SegmentDroppedError, and the
// shipper starts over from what the destination holds (a resync, as the overflow asks).
import fs from 'node:fs';
import { CorruptError, fromSystemError, ImgstreamError } from '../core/errors.js';
import type { IntervalBlock, ShippedInterval, SnapshotRename } from './destination-api.js';
import type { LocatedRecord } from './journal-reader.js';
import { parseMarker, RecordKind } from './record.js';
import { LbnTable } from './lbn-table.js';

interface BlockRef {
  segment: string;
  at: number;
}

/** Block data kept in memory per interval (beyond it, blocks are read again from the journal when shipped). */
const HELD_BYTES = 128 << 20;
const SLAB_BYTES = 1 << 20;

/** HELD_BYTES, or (tests) IMGSTREAM_TEST_HELD_BYTES: how much block data an interval keeps in memory. */
export function heldBytes(): number {
  const t = process.env.IMGSTREAM_TEST_HELD_BYTES;
  return t !== undefined && t !== '' && Number.isSafeInteger(Number(t)) && Number(t) >= 0 ? Number(t) : HELD_BYTES;
}

/** A segment holding blocks of the interval was deleted (by an overflow) before it could be read: the interval cannot be shipped. */
export class SegmentDroppedError extends ImgstreamError {
  constructor(readonly segment: string) {
    super('io', `${segment}: deleted by an overflow of the journal before the interval's blocks in it were read`);
  }
}

/**
 * Slabs handed from one interval to the next: fresh memory costs a page fault per block
 * written into it, reused memory does not. Keeps up to `keep` slabs.
 */
export class SlabPool {
  private readonly free: Buffer[] = [];

  constructor(private readonly keep = Math.floor(heldBytes() / SLAB_BYTES)) {}

  take(): Buffer {
    return this.free.pop() ?? Buffer.allocUnsafe(SLAB_BYTES);
  }

  give(slab: Buffer): void {
    if (this.free.length < this.keep) this.free.push(slab);
  }
}

export class IntervalBuilder {
  /**
   * Per LBN written since it was last zeroed: where its data is kept, a byte position in
   * the slabs (>= 0), or where it lies in the journal, refs[-2 - value] (below -1).
   */
  private readonly blocks = new LbnTable();
  private refs: BlockRef[] = [];
  /** The runs zeroed, [first, end) pairs in the order they came; a block written after its run is in `blocks`, which wins. */
  private zeroRuns: number[] = [];
  /** Block copies go into 1 MiB slabs (one allocation per 256 blocks, not per block): slab i holds positions [i * SLAB_BYTES, (i + 1) * SLAB_BYTES). */
  private readonly slabs: Buffer[] = [];
  /**
   * The crc32 of the block at slab position p, at p / blockSize (-1: not known): a block
   * written alone carries its journal record's, and the transfer's checksum reuses it
   * instead of reading the block again.
   */
  private crcs: number[] = [];
  private slabUsed = SLAB_BYTES;
  /** Acknowledgement time of the first change collected (for lag), null when none. */
  firstTime: number | null = null;
  /** The last record seen (changes or markers). */
  journalTo: number;
  /** Writes (records) collected, before merging. */
  records = 0;
  /** Bytes those records carried. */
  recordBytes = 0;
  /** Snapshots renamed on the source, in order. */
  readonly renames: SnapshotRename[] = [];
  /** The segments blocks are left in, open from the first such block until release() (see the top). */
  private readonly fds = new Map<string, number>();
  /** A segment deleted before it could be opened (its blocks are lost to this interval). */
  private dropped: string | null = null;
  private readonly held = heldBytes();

  constructor(readonly blockSize: number, readonly journalFrom: number, private readonly pool: SlabPool = new SlabPool()) {
    this.journalTo = journalFrom; // block sizes are powers of two up to 1 MiB: a slab holds whole blocks
  }

  /** Bytes of block data the interval ships (blocks that read as zeros carry none). */
  get dataBytes(): number {
    return this.blocks.size * this.blockSize;
  }

  add(rec: LocatedRecord): void {
    this.journalTo = rec.seq;
    if (rec.kind === RecordKind.Rename) {
      // the interval has something to ship, writes or not: it closes at its boundary
      const { from, to } = parseMarker<SnapshotRename>(rec);
      this.renames.push({ from, to });
      this.firstTime ??= rec.time;
      return;
    }
    if (rec.kind !== RecordKind.Data && rec.kind !== RecordKind.Zero) return;
    this.firstTime ??= rec.time;
    this.records++;
    this.recordBytes += rec.payloadBytes;
    const bs = this.blockSize;
    if (rec.kind === RecordKind.Zero) {
      // what was written in its range before reads as zeros now: the cheaper of walking the range or the blocks held
      const end = rec.lbn + rec.count;
      if (rec.count <= this.blocks.size) for (let lbn = rec.lbn; lbn < end; lbn++) this.blocks.delete(lbn);
      else for (const lbn of this.blocks.keys()) if (lbn >= rec.lbn && lbn < end) this.blocks.delete(lbn);
      this.zeroRuns.push(rec.lbn, end);
      return;
    }
    const crc = rec.count === 1 && rec.payload.length === bs && rec.payloadCrc !== undefined ? rec.payloadCrc : -1;
    for (let i = 0; i < rec.count; i++) {
      // the reader's buffer is reused: the block is copied (over its last version, when
      // that is in a slab), unless the slabs are full
      const lbn = rec.lbn + i;
      const prev = this.blocks.get(lbn);
      const at = prev >= 0 ? this.keepAt(prev, rec.payload, i * bs) : this.keep(rec.payload, i * bs);
      if (at >= 0) {
        this.crcs[at / bs] = crc;
        if (at !== prev) this.blocks.set(lbn, at);
        continue;
      }
      this.leave(rec.segment);
      this.refs.push({ segment: rec.segment, at: rec.payloadAt + i * bs });
      this.blocks.set(lbn, -1 - this.refs.length);
    }
  }

  /** A block is left in `segment`: it is opened now, if it is not yet (a deletion after this does not lose it). */
  private leave(segment: string): void {
    if (this.fds.has(segment) || this.dropped !== null) return;
    try {
      this.fds.set(segment, fs.openSync(segment, 'r'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, segment, 'reading the journal');
      this.dropped = segment;
    }
  }

  /** Copies the block at `from` in `payload` into a slab; its position there, or -1 once heldBytes() of slabs are taken. */
  private keep(payload: Buffer, from: number): number {
    if (this.slabUsed + this.blockSize > SLAB_BYTES) {
      if ((this.slabs.length + 1) * SLAB_BYTES > this.held) return -1;
      this.slabs.push(this.pool.take());
      this.slabUsed = 0;
    }
    const at = (this.slabs.length - 1) * SLAB_BYTES + this.slabUsed;
    this.slabUsed += this.blockSize;
    return this.keepAt(at, payload, from);
  }

  /** Copies the block at `from` in `payload` to slab position `at`; returns `at`. */
  private keepAt(at: number, payload: Buffer, from: number): number {
    const bs = this.blockSize;
    const off = at % SLAB_BYTES;
    this.slabs[(at - off) / SLAB_BYTES].set(from === 0 && payload.length === bs ? payload : payload.subarray(from, from + bs), off);
    return at;
  }

  /** The interval was shipped (or given up): its slabs go back to the pool for the next one. */
  release(): void {
    for (const s of this.slabs.splice(0)) this.pool.give(s);
    this.blocks.clear();
    this.refs = [];
    this.crcs = [];
    this.zeroRuns = [];
    for (const fd of this.fds.values()) fs.closeSync(fd);
    this.fds.clear();
  }

  /**
   * The interval's entries in ascending LBN order: each block written (count 0) and the
   * runs of zeros between them (the union of the runs zeroed, cut where a block was
   * written after its run).
   */
  private entries(): { lbns: number[]; counts: number[]; blocks: number } {
    const data = this.blocks.keys().sort();
    const pairs: Array<[number, number]> = [];
    for (let i = 0; i < this.zeroRuns.length; i += 2) pairs.push([this.zeroRuns[i], this.zeroRuns[i + 1]]);
    pairs.sort((a, b) => a[0] - b[0]);
    const runs: Array<[number, number]> = [];
    for (const [first, end] of pairs) {
      const last = runs.at(-1);
      if (last && first <= last[1]) last[1] = Math.max(last[1], end);
      else runs.push([first, end]);
    }
    const lbns: number[] = [];
    const counts: number[] = [];
    let blocks = 0;
    const put = (lbn: number, count: number) => {
      lbns.push(lbn);
      counts.push(count);
      blocks += count || 1;
    };
    let d = 0;
    for (const [first, end] of runs) {
      let s = first;
      for (; d < data.length && data[d] < end; d++) {
        if (data[d] > s) put(s, data[d] - s);
        put(data[d], 0);
        s = Math.max(s, data[d] + 1);
      }
      if (s < end) put(s, end - s);
    }
    for (; d < data.length; d++) put(data[d], 0);
    return { lbns, counts, blocks };
  }

  /** The interval, its entries in ascending LBN order, data read from the journal as they are consumed; their buffers stay as they are until release(). */
  build(seq: number, start: number, end: number, snapshots: string[]): ShippedInterval {
    const { lbns, counts, blocks: blockCount } = this.entries();
    const table = this.blocks;
    const refs = this.refs;
    const slabs = this.slabs;
    const crcs = this.crcs;
    const fds = this.fds;
    const dropped = this.dropped;
    const bs = this.blockSize;
    function* blocks(): Generator<IntervalBlock> {
      if (dropped !== null) throw new SegmentDroppedError(dropped);
      for (let e = 0; e < lbns.length; e++) {
        const lbn = lbns[e];
        if (counts[e] > 0) {
          yield counts[e] > 1 ? { lbn, data: null, count: counts[e] } : { lbn, data: null };
          continue;
        }
        const at = table.get(lbn);
        if (at >= 0) {
          const off = at % SLAB_BYTES;
          const crc = crcs[at / bs];
          const data = slabs[(at - off) / SLAB_BYTES].subarray(off, off + bs);
          yield crc >= 0 ? { lbn, data, crc } : { lbn, data };
          continue;
        }
        const ref = refs[-2 - at];
        const data = Buffer.allocUnsafe(bs);
        if (fs.readSync(fds.get(ref.segment)!, data, 0, bs, ref.at) !== bs) throw new CorruptError(`${ref.segment}: ends before a block the interval holds (at byte ${ref.at})`);
        yield { lbn, data };
      }
    }
    return { seq, start, end, journalFrom: this.journalFrom, journalTo: this.journalTo, kind: 'journal', snapshots, ...(this.renames.length ? { renames: [...this.renames] } : {}), blockCount, ...(blockCount !== lbns.length ? { entries: lbns.length } : {}), blocks: blocks(), stableData: true };
  }
}
