// Collects journal records into one interval: for each LBN only where its last version
// lies in the journal (or that it reads as zeros now), so a block rewritten a thousand
// times in an interval is read and shipped once. Memory is
// one map entry per distinct block written, with its data up to HELD_BYTES per interval;
// past that, the data is read from the segment files when the interval is shipped.
import fs from 'node:fs';
import { fromSystemError } from '../errors.js';
import type { IntervalBlock, ShippedInterval } from './destination-api.js';
import type { LocatedRecord } from './journal-reader.js';
import { RecordKind } from './record.js';

interface BlockRef {
  segment: string;
  at: number;
}

/** Block data kept in memory per interval (beyond it, blocks are read again from the journal when shipped). */
const HELD_BYTES = 128 << 20;
const SLAB_BYTES = 1 << 20;

export class IntervalBuilder {
  private readonly blocks = new Map<number, BlockRef | Buffer | null>();
  /** Bytes of slabs taken: block copies go into 1 MiB slabs (one allocation per 256 blocks, not per block). */
  private held = 0;
  private slab: Buffer | null = null;
  private slabUsed = 0;
  /** Acknowledgement time of the first change collected (for lag), null when none. */
  firstTime: number | null = null;
  /** The last record seen (changes or markers). */
  journalTo: number;
  /** Writes (records) collected, before merging. */
  records = 0;
  /** Bytes those records carried. */
  recordBytes = 0;

  constructor(readonly blockSize: number, readonly journalFrom: number) {
    this.journalTo = journalFrom;
  }

  get size(): number {
    return this.blocks.size;
  }

  add(rec: LocatedRecord): void {
    this.journalTo = rec.seq;
    if (rec.kind !== RecordKind.Data && rec.kind !== RecordKind.Zero) return;
    this.firstTime ??= rec.time;
    this.records++;
    this.recordBytes += rec.payloadBytes;
    const bs = this.blockSize;
    for (let i = 0; i < rec.count; i++) {
      if (rec.kind === RecordKind.Zero) {
        this.blocks.set(rec.lbn + i, null);
        continue;
      }
      const copy = this.copyOf(rec.payload.subarray(i * bs, (i + 1) * bs)); // the reader's buffer is reused
      this.blocks.set(rec.lbn + i, copy ?? { segment: rec.segment, at: rec.payloadAt + i * bs });
    }
  }

  /** A copy of `block` in a slab, or null once HELD_BYTES of slabs are taken. */
  private copyOf(block: Buffer): Buffer | null {
    const n = block.length;
    if (this.slab === null || this.slabUsed + n > this.slab.length) {
      const size = Math.max(n, SLAB_BYTES);
      if (this.held + size > HELD_BYTES) return null;
      this.slab = Buffer.allocUnsafe(size);
      this.slabUsed = 0;
      this.held += size;
    }
    const out = this.slab.subarray(this.slabUsed, this.slabUsed + n);
    block.copy(out);
    this.slabUsed += n;
    return out;
  }

  /** The interval, its blocks in ascending LBN order, read from the journal as they are consumed. */
  build(seq: number, start: number, end: number, snapshots: string[]): ShippedInterval {
    const lbns = [...this.blocks.keys()].sort((a, b) => a - b);
    const refs = this.blocks;
    const bs = this.blockSize;
    async function* blocks(): AsyncGenerator<IntervalBlock> {
      const fds = new Map<string, number>();
      try {
        for (const lbn of lbns) {
          const ref = refs.get(lbn)!;
          if (ref === null || Buffer.isBuffer(ref)) {
            yield { lbn, data: ref };
            continue;
          }
          let fd = fds.get(ref.segment);
          if (fd === undefined) {
            try {
              fd = fs.openSync(ref.segment, 'r');
            } catch (err) {
              throw fromSystemError(err, ref.segment, 'reading the journal');
            }
            fds.set(ref.segment, fd);
          }
          const data = Buffer.allocUnsafe(bs);
          fs.readSync(fd, data, 0, bs, ref.at);
          yield { lbn, data };
        }
      } finally {
        for (const fd of fds.values()) fs.closeSync(fd);
      }
    }
    return { seq, start, end, journalFrom: this.journalFrom, journalTo: this.journalTo, kind: 'journal', snapshots, blockCount: lbns.length, blocks: blocks() };
  }
}
