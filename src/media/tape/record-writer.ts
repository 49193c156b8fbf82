// Re-blocks a byte stream into fixed-size records: every write(2) to the tape file is
// exactly recordSize bytes, as a tape drive in fixed-block mode wants and as `tar -b`
// reads; the last record is zero-padded.
import fs from 'node:fs';
import { IoError, fromSystemError } from '../../core/errors.js';

export class RecordWriter {
  /** Bytes written to the tape file so far (whole records). */
  written = 0;
  private readonly record: Buffer;
  private fill = 0;

  /** `limit`: bytes this tape file may take at most (the room left on the tape). */
  constructor(
    private readonly fd: number,
    readonly recordSize: number,
    private readonly limit: number,
    private readonly what: string,
  ) {
    this.record = Buffer.alloc(recordSize);
  }

  push(chunk: Buffer): void {
    const rs = this.recordSize;
    let off = 0;
    if (this.fill > 0) {
      const n = Math.min(rs - this.fill, chunk.length);
      chunk.copy(this.record, this.fill, 0, n);
      this.fill += n;
      off = n;
      if (this.fill < rs) return;
      this.writeRecord(this.record);
      this.fill = 0;
    }
    for (; chunk.length - off >= rs; off += rs) this.writeRecord(chunk.subarray(off, off + rs));
    if (off < chunk.length) {
      chunk.copy(this.record, 0, off);
      this.fill = chunk.length - off;
    }
  }

  /** Zero-pads and writes the last, partly filled record. */
  flush(): void {
    if (this.fill === 0) return;
    this.record.fill(0, this.fill);
    this.writeRecord(this.record);
    this.fill = 0;
  }

  private writeRecord(rec: Buffer): void {
    if (this.written + rec.length > this.limit) {
      // the target plans every member so this cannot happen; refuse rather than overfill
      throw new IoError(`${this.what}: a record would go past the end of the tape`, 'this is a bug in imgstream: please report it');
    }
    try {
      let done = 0;
      while (done < rec.length) done += fs.writeSync(this.fd, rec, done, rec.length - done);
    } catch (err) {
      throw fromSystemError(err, this.what, 'writing a tape record');
    }
    this.written += rec.length;
  }
}
