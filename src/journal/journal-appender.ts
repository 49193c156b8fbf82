// The byte end of a write journal (journal-writer.ts decides what is recorded): numbers
// records, gathers them in a staging buffer and writes many at once to the current
// segment, begins new segments, and syncs. A failed write drops the records staged (the
// requests they record get errors) and refuses every record and sync from then on: the
// volume never commits what the journal lacks.
import fs from 'node:fs';
import { fromSystemError, type ImgstreamError } from '../core/errors.js';
import { EarlyWriteback } from '../fs/writeback.js';
import { segmentName, syncDirectory } from './journal-files.js';
import { RECORD_HEADER_BYTES, RecordKind, sealHeader, sealRecord, writeHeader } from './record.js';
import { now } from './record-clock.js';

/** Bytes written between two early syncs of a segment (see EarlyWriteback). */
const EARLY_WRITEBACK_BYTES = 16 << 20;
/** Fault injection for tests: the journal's disk is full once a segment would pass this many bytes. */
const TEST_FULL_AT = process.env.IMGSTREAM_TEST_JOURNAL_FULL_AT ? Number(process.env.IMGSTREAM_TEST_JOURNAL_FULL_AT) : null;
/** Tests: records stay staged this long before they are written (a server stalled between stamp and write). */
const TEST_STALL_MS = Number(process.env.IMGSTREAM_TEST_JOURNAL_STALL_MS ?? 0);
/** Records are gathered up to this many bytes and written together (see flush()). */
const STAGE_BYTES = 1 << 20;

/** What the writer keeps count of as records reach the segment, or are dropped. */
export interface AppendHooks {
  /** Problems no client can be told about. */
  report(message: string): void;
  /** The records up to `seq` were written to the segment. */
  written(seq: number): void;
  /** `bytes` of records staged were dropped by a failed write. */
  dropped(bytes: number): void;
}

export class JournalAppender {
  private fd = -1;
  /** Sequence number of the last record appended. */
  seq = 0;
  /** The current segment's first record, and its bytes so far. */
  segFirst = 0;
  segBytes = 0;
  /** CP markers in the current segment (the writer counts them). */
  cpsInSegment = 0;
  private unsynced = false;
  /** Records appended but not yet written: `staged` bytes of `stage`, `stagedRecords` of them. */
  private readonly stage = Buffer.allocUnsafe(STAGE_BYTES);
  private staged = 0;
  private stagedRecords = 0;
  private flushScheduled = false;
  /** Early syncs of the current segment. */
  private early: EarlyWriteback | null = null;
  /** Set when a write to the journal failed. */
  private failure: ImgstreamError | null = null;

  constructor(private readonly dir: string, private readonly hooks: AppendHooks) {}

  /** Whether a segment is open. */
  get isOpen(): boolean {
    return this.fd >= 0;
  }

  /** Throws the failure of an earlier write, if there was one. */
  check(): void {
    if (this.failure) throw this.failure;
  }

  /** Opens the segment whose first record is `firstSeq`: a new one (`create`), or the last one to append to. */
  openSegment(firstSeq: number, create: boolean): void {
    const p = `${this.dir}/${segmentName(firstSeq)}`;
    try {
      this.fd = fs.openSync(p, create ? 'wx' : 'a');
      if (create) syncDirectory(this.dir);
    } catch (err) {
      throw fromSystemError(err, p, 'opening a journal segment');
    }
    this.early = new EarlyWriteback(this.fd, EARLY_WRITEBACK_BYTES);
    this.segFirst = firstSeq;
    this.segBytes = create ? 0 : fs.fstatSync(this.fd).size;
    this.cpsInSegment = 0;
  }

  /** Ends the current segment and begins one at the next record. */
  roll(): void {
    this.sync();
    fs.closeSync(this.fd);
    this.fd = -1;
    this.openSegment(this.seq + 1, true);
  }

  /** Numbers and stages a record (markers are written at once, changes at the next flush()); its bytes. */
  append(kind: RecordKind, lbn: number, count: number, payload: Buffer | null): number {
    const n = payload?.length ?? 0;
    const total = RECORD_HEADER_BYTES + n;
    if (this.staged + total > this.stage.length) this.flush();
    this.seq++;
    if (total > this.stage.length) {
      // larger than the staging buffer: written at once, header and payload as they are
      const head = Buffer.allocUnsafe(RECORD_HEADER_BYTES);
      writeHeader(head, 0, { kind, seq: this.seq, time: now(), lbn, count }, n);
      sealHeader(head, payload);
      this.writeOut([head, payload!], total);
    } else {
      const at = this.staged;
      writeHeader(this.stage, at, { kind, seq: this.seq, time: now(), lbn, count }, n);
      if (n > 0) payload!.copy(this.stage, at + RECORD_HEADER_BYTES);
      sealRecord(this.stage, at, n);
      this.staged += total;
      this.stagedRecords++;
      // markers go out at once (readers wait for them: a seed, a resync); changes at the next flush()
      if (kind !== RecordKind.Data && kind !== RecordKind.Zero) this.flush();
      else if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => {
          this.flushScheduled = false;
          try {
            this.flush();
          } catch (err) {
            this.hooks.report((err as Error).message);
          }
        });
      }
    }
    this.segBytes += total;
    this.unsynced = true;
    return total;
  }

  /**
   * Writes the records appended since the last flush to the segment (one write for many
   * records). Called before the replies to the requests they record go out (the server's
   * request queue does), before every sync, and within one turn of the event loop.
   */
  flush(): void {
    if (this.failure) throw this.failure;
    if (this.staged === 0) return;
    const n = this.staged;
    try {
      if (TEST_FULL_AT !== null && this.segBytes > TEST_FULL_AT) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
      if (TEST_STALL_MS > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, TEST_STALL_MS);
      this.writeOut([this.stage.subarray(0, n)], n);
    } catch (err) {
      this.seq -= this.stagedRecords;
      this.segBytes -= this.staged;
      this.hooks.dropped(this.staged);
      this.staged = 0;
      this.stagedRecords = 0;
      this.failure = fromSystemError(err, this.dir, 'writing the journal');
      this.hooks.report(`journal ${this.dir}: ${this.failure.message}: changes are refused until the server is restarted`);
      throw this.failure;
    }
    this.staged = 0;
    this.stagedRecords = 0;
    this.hooks.written(this.seq);
    // the journal's pages go to disk as they are written: the sync before a CP (on the
    // event loop, which it blocks) then finds little left, instead of every byte written
    // since the last CP (hundreds of MiB under a heavy load); its failures show at sync()
    this.early?.wrote(n);
  }

  /** Writes and fsyncs what is pending (FLUSH/FUA without a CP, before a CP, and close). */
  sync(): void {
    this.flush();
    if (!this.unsynced) return;
    try {
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      throw fromSystemError(err, this.dir, 'syncing the journal');
    }
    this.unsynced = false;
  }

  /** Syncs and closes the segment (nothing when none is open). */
  close(): void {
    if (this.fd < 0) return;
    try {
      this.sync();
    } finally {
      fs.closeSync(this.fd);
      this.fd = -1;
    }
  }

  private writeOut(bufs: Buffer[], total: number): void {
    let written = fs.writevSync(this.fd, bufs);
    while (written < total) {
      // a short write (rare): write the rest from where it stopped
      const rest = Buffer.concat(bufs).subarray(written);
      written += fs.writeSync(this.fd, rest);
    }
  }
}
