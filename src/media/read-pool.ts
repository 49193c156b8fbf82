// The read buffers of one source that fills several at once (the S3 source's ranged GETs
// in flight), for a consumer that gives them back (SourceStream.recycle) once the writes
// from them are done. Past `limit` buffers, a read that finds none free waits for one
// that the consumer has given back and whose writes are still running, instead of
// allocating. Without that wait, a restore whose writes fell behind made the pool grow
// by a buffer each time, for good: a restore from S3 grew with the stream's length
// (issue 17). A read is given a new buffer when no such return is due (each waiting read
// has one due to it), so a consumer that holds buffers until more data comes (a record
// spanning several) never waits on itself, and one that never gives any back (verify)
// gets a fresh one per read.
import { AlignedAllocator } from '../fs/direct-io.js';

export class ReadPool {
  private readonly ours = new WeakSet<ArrayBufferLike>();
  private readonly free: Buffer[] = [];
  private readonly waiting: Array<(buf: Buffer) => void> = [];
  private readonly aligned: AlignedAllocator;
  private made = 0;
  /** Buffers given back whose `after` has not settled yet: each is due back to a waiting read or the free list. */
  private due = 0;

  /** Buffers of `bytes` each (a multiple of 4096), page-aligned (the first `limit`), about `limit` of them in all for a consumer that gives them back. */
  constructor(private readonly bytes: number, private readonly limit: number) {
    this.aligned = new AlignedAllocator(limit);
  }

  /** Buffers made so far. */
  get count(): number {
    return this.made;
  }

  /** A buffer to read into: a free one, a new one, or the next one given back. Callers are served in the order they ask. */
  async take(): Promise<Buffer> {
    let buf = this.waiting.length === 0 ? this.free.pop() : undefined;
    if (!buf) {
      if (this.made >= this.limit && this.due > this.waiting.length) buf = await new Promise<Buffer>((resolve) => this.waiting.push(resolve));
      else {
        buf = this.aligned.take(this.bytes);
        this.made++;
      }
    }
    this.ours.add(buf.buffer);
    return buf;
  }

  /**
   * The consumer is done with `buf` (a view of one take() gave) once `after` settles; a
   * failed `after` (a write that failed) gives it back too: nothing writes from it then.
   */
  recycle(buf: Buffer, after: Promise<void>): void {
    const whole = buf.buffer;
    if (!this.ours.delete(whole)) return;
    this.due++;
    const back = () => {
      this.due--;
      const b = Buffer.from(whole, 0, this.bytes);
      const next = this.waiting.shift();
      if (next) next(b);
      else this.free.push(b);
    };
    after.then(back, back);
  }
}
