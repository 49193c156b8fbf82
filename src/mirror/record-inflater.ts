// The receiving end of compressed records (record-queue.ts): one zstd frame into a buffer
// of the raw length the record header gives, from a few reused buffers (allocating 1 MiB
// per record costs more than decompressing it).
import zstd from 'zstd-napi/binding.js';
import { CorruptError } from '../core/errors.js';
import { MAX_PAYLOAD_BYTES } from '../format/peer-protocol.js';

const MAX_SPARES = 8;

export class RecordInflater {
  private readonly dctx = new zstd.DCtx();
  private readonly spares: Buffer[] = [];

  /** The raw payload of record `rec`, `length` bytes (checked), from its zstd frame. */
  decompress(frame: Buffer, length: number, rec: number): Buffer {
    if (!Number.isInteger(length) || length < 0 || length > MAX_PAYLOAD_BYTES) throw new CorruptError(`mirror: record ${rec} declares a length of ${length}`);
    let size: number | null = null;
    try {
      size = zstd.getFrameContentSize(frame);
    } catch {
      size = null;
    }
    if (size !== length) throw new CorruptError(`mirror: record ${rec} is damaged (its zstd frame holds ${size ?? 'an unknown size'}, not ${length} bytes)`);
    const at = this.spares.findIndex((b) => b.length === length);
    const out = at >= 0 ? this.spares.splice(at, 1)[0] : Buffer.allocUnsafeSlow(length);
    let n: number;
    try {
      n = this.dctx.decompress(out, frame);
    } catch (err) {
      throw new CorruptError(`mirror: record ${rec} does not decompress: ${(err as Error).message}`);
    }
    if (n !== length) throw new CorruptError(`mirror: record ${rec} decompresses to ${n} bytes, not ${length}`);
    return out;
  }

  /** `buf` (from decompress) is free again once `after` resolves. */
  recycle(buf: Buffer, after: Promise<void>): void {
    void after.then(
      () => void (this.spares.length < MAX_SPARES && this.spares.push(buf)),
      () => undefined,
    );
  }
}
