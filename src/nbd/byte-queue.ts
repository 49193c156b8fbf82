// Bytes received on a socket and not consumed yet. Messages are taken whole once they
// have fully arrived; a message inside one received chunk is a view of it (no copy).
export class ByteQueue {
  private chunks: Buffer[] = [];
  /** Bytes of chunks[0] already consumed. */
  private head = 0;
  length = 0;

  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
  }

  /** Consumes and returns the next n bytes (n <= length). */
  take(n: number): Buffer {
    return this.takeInto(n, () => Buffer.allocUnsafe(n));
  }

  /**
   * Consumes the next n bytes (n <= length): a view when they lie in one chunk, otherwise
   * copied into the buffer `alloc` returns (exactly n bytes).
   */
  takeInto(n: number, alloc: () => Buffer): Buffer {
    if (n > this.length) throw new RangeError(`take(${n}) with ${this.length} bytes queued`);
    if (n === 0) return Buffer.alloc(0);
    const first = this.chunks[0];
    if (first.length - this.head >= n) {
      const out = first.subarray(this.head, this.head + n);
      this.consume(n);
      return out;
    }
    const out = alloc();
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0];
      const k = Math.min(n - filled, c.length - this.head);
      c.copy(out, filled, this.head, this.head + k);
      filled += k;
      this.consume(k);
    }
    return out;
  }

  /** Drops up to n bytes; returns how many were dropped. */
  skip(n: number): number {
    const k = Math.min(n, this.length);
    let left = k;
    while (left > 0) {
      const step = Math.min(left, this.chunks[0].length - this.head);
      this.consume(step);
      left -= step;
    }
    return k;
  }

  clear(): void {
    this.chunks = [];
    this.head = 0;
    this.length = 0;
  }

  private consume(n: number): void {
    this.head += n;
    this.length -= n;
    if (this.head === this.chunks[0].length) {
      this.chunks.shift();
      this.head = 0;
    }
  }
}
