// ReadPool: past its limit, a read waits for a buffer the consumer gave back while its
// writes run (the pool does not grow with a long stream), but never waits when nothing is
// due back (a consumer holding buffers until more data comes, or one that never gives any
// back), so it cannot wait on its own consumer.
import { describe, expect, it } from 'vitest';
import { isDirectAligned } from '../../src/fs/direct-io.js';
import { ReadPool } from '../../src/media/read-pool.js';

const KiB = 1024;

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (e: Error) => void } {
  let resolve!: () => void;
  let reject!: (e: Error) => void;
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** True when `p` has settled after the pending callbacks ran. */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('ReadPool', () => {
  it('past its limit, waits for the buffer given back once its writes are done, and fills that one again', async () => {
    const pool = new ReadPool(64 * KiB, 3);
    const bufs = [await pool.take(), await pool.take(), await pool.take()];
    expect(bufs.every((b) => b.length === 64 * KiB && isDirectAligned(b))).toBe(true);
    const write = deferred();
    pool.recycle(bufs[1].subarray(100, 200), write.promise); // a view of it, as records are
    const next = pool.take();
    expect(await settled(next), 'waits while the write from the buffer runs').toBe(false);
    write.resolve();
    const again = await next;
    expect(again.buffer).toBe(bufs[1].buffer);
    expect(again.length).toBe(64 * KiB);
    expect(pool.count).toBe(3);
  });

  it('serves waiting reads in the order they asked; a failed write gives its buffer back too', async () => {
    const pool = new ReadPool(64 * KiB, 2);
    const [a, b] = [await pool.take(), await pool.take()];
    const wa = deferred();
    const wb = deferred();
    pool.recycle(a, wa.promise);
    pool.recycle(b, wb.promise);
    const first = pool.take();
    const second = pool.take();
    wb.reject(new Error('EIO'));
    expect((await first).buffer).toBe(b.buffer);
    wa.resolve();
    expect((await second).buffer).toBe(a.buffer);
    expect(pool.count).toBe(2);
  });

  it('gives a new buffer when none is due back: a consumer holding all of them, or never giving any back', async () => {
    const pool = new ReadPool(64 * KiB, 2);
    const held = [await pool.take(), await pool.take()];
    const more = pool.take();
    expect(await settled(more), 'nothing due back: no wait').toBe(true);
    expect(new Set([...held, await more].map((b) => b.buffer)).size).toBe(3);
    // one due back, two reads: the first waits for it, the second gets a new one
    const w = deferred();
    pool.recycle(held[0], w.promise);
    const waits = pool.take();
    const fresh = pool.take();
    expect(await settled(fresh)).toBe(true);
    expect(await settled(waits)).toBe(false);
    w.resolve();
    expect((await waits).buffer).toBe(held[0].buffer);
    expect(pool.count).toBe(4);
  });
});
