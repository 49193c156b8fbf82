// Reads a write journal in sequence order, while a server may still be appending to it:
// next() gives the next intact record, or null when the next one is not (yet) complete.
// A record that fails its checksum at the end of the newest segment is a write in
// progress (or, after a crash, a torn tail the writer cuts off when it reopens); anywhere
// else it is damage, reported as corrupt.
import fs from 'node:fs';
import { CorruptError, fromSystemError } from '../errors.js';
import { listSegments, type SegmentFile } from './journal-files.js';
import { decodeHeader, RECORD_HEADER_BYTES, recordIntact, type JournalRecord } from './record.js';

/** A record and where it lies: its payload starts at `payloadAt` in `segment`. */
export interface LocatedRecord extends JournalRecord {
  segment: string;
  payloadAt: number;
}

export class JournalReader {
  private seg: SegmentFile | null = null;
  private fd: number | null = null;
  private offset = 0;
  private header = Buffer.alloc(RECORD_HEADER_BYTES);

  /** Reads from the record with sequence number `nextSeq` on. */
  constructor(readonly dir: string, public nextSeq: number) {}

  /** The sequence number of the oldest record still in the journal (null: none). */
  oldestSeq(): number | null {
    const segs = listSegments(this.dir);
    return segs.length > 0 ? segs[0].firstSeq : null;
  }

  /** The next record, or null when it is not complete yet. Throws CorruptError on damage, and when record nextSeq is no longer in the journal (see gap()). */
  next(): LocatedRecord | null {
    if (this.fd === null && !this.openAt(this.nextSeq)) return null;
    for (;;) {
      const got = this.readAt(this.header, this.offset);
      const h = got === RECORD_HEADER_BYTES ? decodeHeader(this.header, 0) : null;
      if (h === null) {
        if (got === 0 && this.advanceSegment()) continue;
        if (got > 0 && this.isClosedSegment()) throw this.damage('a damaged record header');
        return null;
      }
      if (h.seq !== this.nextSeq) {
        if (h.seq < this.nextSeq) {
          // skipping to nextSeq inside a segment: trust headers, checksums are checked on what is used
          this.offset += RECORD_HEADER_BYTES + h.payloadBytes;
          continue;
        }
        throw this.damage(`record ${h.seq} where ${this.nextSeq} was expected`);
      }
      const whole = Buffer.allocUnsafe(RECORD_HEADER_BYTES + h.payloadBytes);
      const n = this.readAt(whole, this.offset);
      if (n < whole.length || !recordIntact(whole, 0, h)) {
        if (this.isClosedSegment()) throw this.damage(n < whole.length ? 'a record cut short' : 'a record that fails its checksum');
        return null;
      }
      const rec: LocatedRecord = { ...h, payload: whole.subarray(RECORD_HEADER_BYTES), segment: this.seg!.path, payloadAt: this.offset + RECORD_HEADER_BYTES };
      this.offset += whole.length;
      this.nextSeq++;
      return rec;
    }
  }

  /** True when record nextSeq was dropped from the journal (its segments deleted after an overflow). */
  gap(): boolean {
    const segs = listSegments(this.dir);
    return segs.length > 0 && segs[0].firstSeq > this.nextSeq;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    this.seg = null;
  }

  /** Opens the segment that holds record `seq`; false when there is none yet. */
  private openAt(seq: number): boolean {
    const segs = listSegments(this.dir);
    let pick: SegmentFile | null = null;
    for (const s of segs) if (s.firstSeq <= seq) pick = s;
    if (pick === null) return false;
    this.open(pick);
    return true;
  }

  private open(s: SegmentFile): void {
    this.close();
    try {
      this.fd = fs.openSync(s.path, 'r');
    } catch (err) {
      throw fromSystemError(err, s.path, 'reading the journal');
    }
    this.seg = s;
    this.offset = 0;
  }

  /** Moves to the segment that starts at nextSeq, when the writer has begun it. */
  private advanceSegment(): boolean {
    const after = listSegments(this.dir).find((s) => s.firstSeq > this.seg!.firstSeq);
    if (!after) return false;
    if (after.firstSeq !== this.nextSeq) throw this.damage(`the journal goes on at record ${after.firstSeq}, not ${this.nextSeq}`);
    this.open(after);
    return true;
  }

  private isClosedSegment(): boolean {
    return listSegments(this.dir).some((s) => s.firstSeq > this.seg!.firstSeq);
  }

  private readAt(buf: Buffer, position: number): number {
    let got = 0;
    while (got < buf.length) {
      const n = fs.readSync(this.fd!, buf, got, buf.length - got, position + got);
      if (n === 0) break;
      got += n;
    }
    return got;
  }

  private damage(what: string): CorruptError {
    return new CorruptError(`${this.seg!.path}: ${what} at byte ${this.offset}`, 'the journal is damaged: move it aside (the next protect transfer resyncs the changed blocks)');
  }
}
