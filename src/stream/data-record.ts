// DATA record payloads (format/image-stream.ts: u32 count, u32 zero, count x u64 VBN,
// then the blocks) built by reading runs of consecutive VBNs from a volume straight into
// the payload, which is only compacted when the record ends up short. Dumps and mirror
// transfers send them.
import type { Volume } from '../volume/volume.js';

export class DataRecordBuilder {
  /** Blocks a full record holds. */
  readonly per: number;
  private readonly dataOff: number;
  private rec: Buffer;
  private n = 0;

  /** `alloc` gives the buffers payloads are made in (a record hands its own over when full). */
  constructor(private readonly vol: Volume, recordBytes: number, private readonly alloc: (size: number) => Buffer) {
    this.per = Math.max(1, Math.floor(recordBytes / vol.blockSize));
    this.dataOff = 8 + this.per * 8;
    this.rec = alloc(this.dataOff + this.per * vol.blockSize);
  }

  /** Bytes of a full record's payload (the size `alloc` is asked for, but for a short last record). */
  get bytes(): number {
    return this.dataOff + this.per * this.vol.blockSize;
  }

  /** Blocks in the record so far. */
  get count(): number {
    return this.n;
  }

  /** Blocks it has room for. */
  get room(): number {
    return this.per - this.n;
  }

  /** Reads `count` blocks from VBN `first` on (at most `room`) into the record. */
  add(first: number, count: number): void {
    const bs = this.vol.blockSize;
    if (count > this.room) throw new RangeError('DATA record overfull');
    const rec = this.rec;
    const n = this.n;
    this.vol.file.read(rec.subarray(this.dataOff + n * bs, this.dataOff + (n + count) * bs), this.vol.layout.vbnOffset(first));
    for (let k = 0; k < count; k++) {
      const v = first + k;
      rec.writeUInt32LE(v >>> 0, 8 + (n + k) * 8);
      rec.writeUInt32LE(Math.floor(v / 4294967296), 12 + (n + k) * 8);
    }
    this.n += count;
  }

  /** The record's payload and block count (null when empty); the builder starts a new record. */
  finish(): { payload: Buffer; blocks: number } | null {
    const n = this.n;
    if (n === 0) return null;
    const bs = this.vol.blockSize;
    let payload = this.rec;
    if (n < this.per) {
      payload = this.alloc(8 + n * 8 + n * bs);
      this.rec.copy(payload, 0, 0, 8 + n * 8);
      this.rec.copy(payload, 8 + n * 8, this.dataOff, this.dataOff + n * bs);
    } else this.rec = this.alloc(this.dataOff + this.per * bs);
    payload.writeUInt32LE(n, 0);
    payload.writeUInt32LE(0, 4);
    this.n = 0;
    return { payload, blocks: n };
  }
}
