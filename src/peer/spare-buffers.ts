// The buffers a peer channel gathers a payload into when it spans socket chunks (large
// ones: SPARE_MIN_BYTES and up), given back by the consumer once it wrote them and lent out
// again. They are page-aligned and a payload ends on a page boundary: a payload that ends in
// whole blocks (a DATA record) has them aligned, and the receiver writes them with direct
// I/O from here instead of copying them first.
import { AlignedAllocator, DIRECT_UNIT } from '../fs/direct-io.js';

/** Payloads at least this large that span socket chunks are gathered into reusable buffers... */
export const SPARE_MIN_BYTES = 64 << 10;
/** ... of this granularity, at most this many kept. */
const SPARE_GRAIN = 64 << 10;
const MAX_SPARES = 64;

export class SpareBuffers {
  /** Buffers given back (recycle), and those lent out in payloads. */
  private readonly spares: Buffer[] = [];
  private readonly lent = new WeakSet<ArrayBufferLike>();
  private readonly aligned = new AlignedAllocator(MAX_SPARES);

  /** n bytes of a buffer given back by recycle(), or of a new one, ending on a page boundary. */
  take(n: number): Buffer {
    const end = Math.ceil(n / DIRECT_UNIT) * DIRECT_UNIT;
    const size = Math.ceil(end / SPARE_GRAIN) * SPARE_GRAIN;
    const i = this.spares.findIndex((b) => b.length === size);
    const buf = i >= 0 ? this.spares.splice(i, 1)[0] : this.aligned.take(size);
    this.lent.add(buf.buffer);
    return buf.subarray(end - n, end);
  }

  /** Takes `payload`'s buffer back once `after` settles (a view of a socket chunk, or one given back already, is ignored). */
  recycle(payload: Buffer, after: Promise<void>): void {
    const whole = payload.buffer;
    if (!this.lent.delete(whole)) return;
    after.then(
      () => {
        if (this.spares.length < MAX_SPARES) this.spares.push(Buffer.from(whole));
      },
      () => undefined,
    );
  }
}
