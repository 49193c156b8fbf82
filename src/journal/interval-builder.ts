// Collects journal records into one interval: for each LBN only where its last version
// lies in the journal (or that it reads as zeros now), so a block rewritten a thousand
// times in an interval is read and shipped once. Holds references, not data: memory is
// one map entry per distinct block written, and the data is read from the segment files
// when the interval is shipped.
import fs from 'node:fs';
import { fromSystemError } from '../errors.js';
import type { IntervalBlock, ShippedInterval } from './destination-api.js';
import type { LocatedRecord } from './journal-reader.js';
import { RecordKind } from './record.js';

interface BlockRef {
  segment: string;
  at: number;
}

export class IntervalBuilder {
  private readonly blocks = new Map<number, BlockRef | null>();
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
    for (let i = 0; i < rec.count; i++) {
      this.blocks.set(rec.lbn + i, rec.kind === RecordKind.Zero ? null : { segment: rec.segment, at: rec.payloadAt + i * this.blockSize });
    }
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
          if (ref === null) {
            yield { lbn, data: null };
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
