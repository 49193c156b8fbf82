// A stream's bytes read ahead of its consumer into 4 MiB buffers it may give back
// (SourceStream.recycle), for the sources that read regular files themselves: a stream
// file, and stdin redirected from one. Each buffer is filled before it is handed on, so
// buffer k holds the stream's bytes from k x 4 MiB on; and the buffers are page-aligned,
// so what is 4 KiB-aligned in the stream (an uncompressed stream's blocks, see PAD in
// format/image-stream.ts) is aligned in memory too and can be written with direct I/O
// straight from them. The next buffer is being filled on the thread pool while the
// consumer works on this one.
import { AlignedAllocator } from '../fs/direct-io.js';
import type { SourceStream } from './medium.js';

export const READ_BYTES = 4 << 20;
/** Aligned read buffers made per stream (64 MiB): a restore's in flight at once stay under it. */
const ALIGNED_READS = 16;

/** Reads the next bytes into buf[at, at + length): how many, 0 at the end of the stream. */
export type ReadInto = (buf: Buffer, at: number, length: number) => Promise<number>;

/** `read`'s bytes in filled, recyclable buffers; `close` runs once the consumer is done (or stops). */
export function readAheadBytes(read: ReadInto, close: () => Promise<void>): Pick<SourceStream, 'bytes' | 'recycle'> {
  const ours = new WeakSet<ArrayBufferLike>();
  const free: Buffer[] = [];
  const aligned = new AlignedAllocator(ALIGNED_READS);
  const take = () => {
    const buf = free.pop() ?? aligned.take(READ_BYTES);
    ours.add(buf.buffer);
    return buf;
  };
  return {
    bytes: readAhead(read, take, close),
    recycle(buf, after) {
      const whole = buf.buffer;
      if (ours.delete(whole)) after.then(() => free.push(Buffer.from(whole, 0, READ_BYTES)), () => undefined);
    },
  };
}

async function* readAhead(read: ReadInto, take: () => Buffer, close: () => Promise<void>): AsyncGenerator<Buffer> {
  // a buffer per read that nobody else uses (the stream reader hands out records as views into it)
  const fill = async (): Promise<Buffer> => {
    const buf = take();
    let n = 0;
    while (n < buf.length) {
      const k = await read(buf, n, buf.length - n);
      if (k === 0) break;
      n += k;
    }
    return buf.subarray(0, n);
  };
  let pending = fill();
  try {
    for (;;) {
      const buf = await pending;
      if (buf.length === 0) return;
      pending = fill();
      yield buf;
    }
  } finally {
    // a consumer that stops early leaves one read running: let it end before closing
    await pending.catch(() => undefined);
    await close().catch(() => undefined);
  }
}
