// Reads a write journal in sequence order, while a server may still be appending to it:
// next() gives the next intact record, or null when the next one is not (yet) complete.
// A record that fails its checksum at the end of the newest segment is a write in
// progress (or, after a crash, a torn tail the writer cuts off when it reopens); anywhere
// else it is damage, reported as corrupt.
import fs from 'node:fs';
import { BlockSet } from '../core/block-set.js';
import { CorruptError, FormatVersionError, fromSystemError, NewerFeatureError } from '../core/errors.js';
import { listSegments, readDirty, type DirtyRename, type SegmentFile } from './journal-files.js';
import { decodeHeader, intactPayloadCrc, LAST_RECORD_KIND, otherRecordVersion, parseMarker, RECORD_HEADER_BYTES, RecordKind, recordIntact, type JournalRecord } from './record.js';

/** A record and where it lies: its payload starts at `payloadAt` in `segment`. */
export interface LocatedRecord extends JournalRecord {
  segment: string;
  payloadAt: number;
  /** The payload's own crc32 (absent: not known). */
  payloadCrc?: number;
}

/**
 * Bytes read from a segment at once: records are parsed from this buffer. Small enough to
 * stay in the CPU's cache between the read, the records' checksums and the copies of their
 * blocks (8 MiB went through memory three times).
 */
const CHUNK = 512 << 10;

export class JournalReader {
  private seg: SegmentFile | null = null;
  private fd: number | null = null;
  private offset = 0;
  private buf = Buffer.allocUnsafe(CHUNK);
  /** File offset of buf[0], and how many bytes of buf hold file data. */
  private bufStart = 0;
  private bufLen = 0;

  /**
   * Reads from the record with sequence number `nextSeq` on. `damageAtTail: 'throw'`: a bad
   * record in the newest segment with more after it (no write in progress leaves that) is
   * damage, thrown (a shipper must not take the journal for a shorter one); by default
   * next() stops there as at a tail still being written (a server's recovery and the
   * status name such damage themselves).
   */
  constructor(readonly dir: string, public nextSeq: number, private readonly opts: { damageAtTail?: 'stop' | 'throw' } = {}) {}

  /** The sequence number of the oldest record still in the journal (null: none). */
  oldestSeq(): number | null {
    const segs = listSegments(this.dir);
    return segs.length > 0 ? segs[0].firstSeq : null;
  }

  /**
   * The next record, or null when it is not complete yet (or the records that follow were
   * dropped: see gap()). Its payload is a view valid until the next call: copy what you
   * keep. Throws CorruptError on damage.
   */
  next(): LocatedRecord | null {
    if (this.fd === null && !this.openAt(this.nextSeq)) return null;
    for (;;) {
      const got = this.fill(this.offset, RECORD_HEADER_BYTES);
      const h = got >= RECORD_HEADER_BYTES ? decodeHeader(this.buf, this.offset - this.bufStart) : null;
      if (h === null) {
        const version = got >= 4 ? otherRecordVersion(this.buf, this.offset - this.bufStart) : null;
        if (version !== null) throw new FormatVersionError('a journal record', version, [1], `${this.seg!.path} at byte ${this.offset}`, 'serve it with the imgstream version that wrote it, or a newer one');
        if (got === 0 && this.advanceSegment()) continue;
        if (got > 0 && this.isClosedSegment()) throw this.damage('a damaged record header');
        if (got > 0 && this.settleTail('a damaged record header')) continue;
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
      const total = RECORD_HEADER_BYTES + h.payloadBytes;
      const n = this.fill(this.offset, total);
      const at = this.offset - this.bufStart;
      const payload = n < total ? null : this.buf.subarray(at + RECORD_HEADER_BYTES, at + total);
      const payloadCrc = payload === null ? null : intactPayloadCrc(this.buf, at, payload);
      if (payload === null || payloadCrc === null) {
        if (this.isClosedSegment()) throw this.damage(n < total ? 'a record cut short' : 'a record that fails its checksum');
        if (this.settleTail(n < total ? 'a record cut short' : 'a record that fails its checksum')) continue;
        return null;
      }
      if (h.kind > LAST_RECORD_KIND) throw new NewerFeatureError(`record ${h.seq} is of kind ${h.kind}`, `${this.seg!.path} at byte ${this.offset}`);
      const rec: LocatedRecord = {
        kind: h.kind,
        seq: h.seq,
        time: h.time,
        lbn: h.lbn,
        count: h.count,
        payloadBytes: h.payloadBytes,
        payload,
        segment: this.seg!.path,
        payloadAt: this.offset + RECORD_HEADER_BYTES,
        payloadCrc,
      };
      this.offset += total;
      this.nextSeq++;
      return rec;
    }
  }

  /** Where the next record would begin: its segment file and byte (null before the first read). */
  position(): { segment: string; offset: number } | null {
    return this.seg === null ? null : { segment: this.seg.path, offset: this.offset };
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
    this.bufLen = 0;
  }

  /** Opens the segment that holds record `seq`; false when there is none yet. */
  private openAt(seq: number): boolean {
    const segs = listSegments(this.dir);
    let pick: SegmentFile | null = null;
    for (const s of segs) if (s.firstSeq <= seq) pick = s;
    if (pick === null) return false;
    return this.open(pick);
  }

  /** False when the segment is gone since it was listed: an overflow dropped it (gap() then says so), or a destination holds it all. */
  private open(s: SegmentFile): boolean {
    this.close();
    try {
      this.fd = fs.openSync(s.path, 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw fromSystemError(err, s.path, 'reading the journal');
    }
    this.seg = s;
    this.offset = 0;
    return true;
  }

  /** Moves to the segment that starts at nextSeq, when the writer has begun it (one that starts later is a gap: gap() says so). */
  private advanceSegment(): boolean {
    const after = listSegments(this.dir).find((s) => s.firstSeq > this.seg!.firstSeq);
    if (!after) return false;
    if (after.firstSeq > this.nextSeq) return false;
    if (after.firstSeq !== this.nextSeq) throw this.damage(`the journal goes on at record ${after.firstSeq}, not ${this.nextSeq}`);
    return this.open(after);
  }

  /**
   * The record at the read position of the newest segment did not read whole: true when
   * it does now (the writer finished it meanwhile: read on), false when what follows can
   * be a record still being written or one a crash cut short (less than a header, or one
   * record reaching the end of the file: wait). Anything else is damage, thrown: a reader
   * that stopped there would take the journal for a shorter one, and a shipper would claim
   * points without the writes after it.
   */
  private settleTail(what: string): boolean {
    if (this.opts.damageAtTail !== 'throw') return false;
    let size: number;
    try {
      size = fs.fstatSync(this.fd!).size;
    } catch (err) {
      throw fromSystemError(err, this.seg!.path, 'reading the journal');
    }
    // the bytes up to `size` are final (a writer only appends): read them again, what the
    // buffer holds may predate the writer's last append
    this.bufLen = 0;
    if (this.fill(this.offset, RECORD_HEADER_BYTES) >= RECORD_HEADER_BYTES) {
      const h = decodeHeader(this.buf, this.offset - this.bufStart);
      const total = h === null ? 0 : RECORD_HEADER_BYTES + h.payloadBytes;
      if (h !== null && h.seq === this.nextSeq && this.fill(this.offset, total) >= total && recordIntact(this.buf, this.offset - this.bufStart, h)) return true;
    }
    if (tornTail(this.seg!.path, this.offset, size, this.fd!)) return false;
    throw this.damage(`${what}, with ${size - this.offset} bytes after it`);
  }

  private isClosedSegment(): boolean {
    return listSegments(this.dir).some((s) => s.firstSeq > this.seg!.firstSeq);
  }

  /** Makes the bytes [position, position + n) available in buf if the file has them; returns how many it has from position (up to n). */
  private fill(position: number, n: number): number {
    const inBuf = this.bufStart + this.bufLen - position;
    if (position >= this.bufStart && inBuf >= n) return n;
    if (this.buf.length < n) this.buf = Buffer.allocUnsafe(n);
    let got = 0;
    while (got < this.buf.length) {
      const r = fs.readSync(this.fd!, this.buf, got, this.buf.length - got, position + got);
      if (r === 0) break;
      got += r;
    }
    this.bufStart = position;
    this.bufLen = got;
    return Math.min(got, n);
  }

  private damage(what: string): CorruptError {
    return new CorruptError(`${this.seg!.path}: ${what} at byte ${this.offset}`, 'serve without --journal; to protect again, move the journal directory aside and protect to a new destination');
  }
}

/** The sequence number of the journal's last intact record (after an overflow with no segment left: the last one the dirty set covers). */
export function lastRecordOf(dir: string, where?: (at: { segment: string; offset: number } | null) => void): number {
  const segs = listSegments(dir);
  if (segs.length === 0) return readDirty(dir)?.upTo ?? 0;
  const lastSeg = segs[segs.length - 1];
  const r = new JournalReader(dir, lastSeg.firstSeq);
  let last = lastSeg.firstSeq - 1;
  try {
    for (let rec = r.next(); rec !== null; rec = r.next()) last = rec.seq;
    where?.(r.position());
  } finally {
    r.close();
  }
  return last;
}

/**
 * True when the bytes from `at` to the end of the segment are what a write cut short by a
 * crash leaves: less than a header, or one record whose extent reaches the end. Anything
 * else (a bad record followed by more) is damage, never cut off in silence.
 */
export function tornTail(file: string, at: number, size: number, open?: number): boolean {
  if (size - at < RECORD_HEADER_BYTES) return true;
  const head = Buffer.alloc(RECORD_HEADER_BYTES);
  // (a reader passes the descriptor it reads by: the file may be unlinked since, by an overflow)
  const fd = open ?? fs.openSync(file, 'r');
  try {
    fs.readSync(fd, head, 0, RECORD_HEADER_BYTES, at);
  } finally {
    if (open === undefined) fs.closeSync(fd);
  }
  const h = decodeHeader(head, 0);
  return h !== null && at + RECORD_HEADER_BYTES + h.payloadBytes >= size;
}

/** What the records of a journal after some record change: blocks, and the snapshots taken and renamed. */
export interface JournalChanges {
  blocks: BlockSet;
  snapshots: string[];
  renames: DirtyRename[];
}

/** The changes of the records of journal `dir` after record `after` (those still in its segments). */
export function changesAfter(dir: string, after: number): JournalChanges {
  const out: JournalChanges = { blocks: new BlockSet(), snapshots: [], renames: [] };
  const oldest = listSegments(dir)[0]?.firstSeq;
  if (oldest === undefined) return out;
  const r = new JournalReader(dir, Math.max(after + 1, oldest));
  try {
    for (let rec = r.next(); rec !== null; rec = r.next()) {
      if (rec.kind === RecordKind.Data || rec.kind === RecordKind.Zero) out.blocks.addRange(rec.lbn, rec.count);
      else if (rec.kind === RecordKind.Snapshot) out.snapshots.push(parseMarker<{ name: string }>(rec).name);
      else if (rec.kind === RecordKind.Rename) {
        const rn = parseMarker<{ from: string; to: string }>(rec);
        out.renames.push({ ...rn, seq: rec.seq });
        const i = out.snapshots.lastIndexOf(rn.from); // (taken among these records: named as it is now)
        if (i >= 0) out.snapshots[i] = rn.to;
      }
    }
  } finally {
    r.close();
  }
  return out;
}
