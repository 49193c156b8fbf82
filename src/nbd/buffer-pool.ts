// Buffers for READ replies (reused once the socket has sent them) and for WRITE payloads
// that arrived in pieces (reused once the write is done). Allocating a fresh
// buffer per request costs more than the I/O itself: page faults on first touch and
// garbage collection of gigabytes of short-lived memory. Capacities are multiples of
// 64 KiB (clients mostly repeat one request size); the pool keeps at most `limit` bytes
// of idle buffers.
export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private idle = 0;

  constructor(private readonly limit = 64 << 20) {}

  /** A buffer of exactly n bytes (contents undefined), backed by a pooled allocation. */
  take(n: number): Buffer {
    const cap = capacityFor(n);
    const list = this.free.get(cap);
    const ab = list?.pop();
    if (ab) {
      this.idle -= cap;
      return Buffer.from(ab, 0, n);
    }
    return Buffer.from(Buffer.allocUnsafeSlow(cap).buffer, 0, n);
  }

  /** Returns a buffer from take() once nothing refers to it any more. */
  give(b: Buffer): void {
    const ab = b.buffer as ArrayBuffer;
    const cap = ab.byteLength;
    if (cap !== capacityFor(cap) || this.idle + cap > this.limit) return;
    let list = this.free.get(cap);
    if (!list) this.free.set(cap, (list = []));
    list.push(ab);
    this.idle += cap;
  }
}

const GRANULE = 64 << 10;

function capacityFor(n: number): number {
  return Math.max(1, Math.ceil(n / GRANULE)) * GRANULE;
}
