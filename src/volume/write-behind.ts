// Writes of block data that need not be done before the caller goes on: they run on
// libuv's threads while the caller reads and compares what comes next, with a bound on the
// bytes in flight; written() tells when those started so far are done (before a sync
// that acknowledges them, or before their buffer is reused). For data that lands only on
// VBNs the volume's last CP does not use (import, restore, mirror transfers): nothing
// reads them back before the CP, whose sync comes after drain(). A buffer given must not
// change until written() says its write is done.
import fs from 'node:fs';
import { fromSystemError } from '../errors.js';
import { EarlyWriteback } from '../writeback.js';
import type { BlockFile } from './block-file.js';

const MAX_IN_FLIGHT = 32 << 20;

/**
 * Fault injection for tests: IMGSTREAM_SLOW_WRITES=<ms> starts every write that late, so
 * a buffer changed before its write is done shows in what lands on the disk.
 */
const SLOW_WRITES_MS = Number(process.env.IMGSTREAM_SLOW_WRITES ?? 0) || 0;

export class WriteBehind {
  private inFlight = 0;
  private failure: Error | null = null;
  private readonly waiters: Array<() => void> = [];
  /** Writes started and not done, by number; and who waits for the ones before a number. */
  private started = 0;
  private readonly running = new Set<number>();
  private barriers: Array<{ before: number; resolve: () => void }> = [];

  private readonly writeback: EarlyWriteback | null;

  /** `opts.writeback`: start syncs as the writes go (see EarlyWriteback), for a caller that ends in a sync. */
  constructor(private readonly file: BlockFile, opts: { maxBytes?: number; writeback?: boolean } = {}) {
    this.maxBytes = opts.maxBytes ?? MAX_IN_FLIGHT;
    this.writeback = opts.writeback ? new EarlyWriteback(file.fd) : null;
  }

  private readonly maxBytes: number;

  /** Starts writing `buf` at `position`; waits first while too much is in flight. Throws an earlier write's error. */
  async write(buf: Uint8Array, position: number): Promise<void> {
    if (this.failure) throw this.failure;
    while (this.inFlight > 0 && this.inFlight + buf.length > this.maxBytes) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
    this.inFlight += buf.length;
    const seq = this.started++;
    this.running.add(seq);
    if (SLOW_WRITES_MS > 0) setTimeout(() => this.writeAll(buf, 0, position, seq), SLOW_WRITES_MS);
    else this.writeAll(buf, 0, position, seq);
  }

  /**
   * Resolves once every write started before this call is done (later ones may still
   * run): what a sync started afterwards makes durable. Throws a write's error.
   */
  async written(): Promise<void> {
    const before = this.started;
    if (this.oldestRunning() >= before) {
      if (this.failure) throw this.failure;
      return;
    }
    await new Promise<void>((resolve) => this.barriers.push({ before, resolve }));
    if (this.failure) throw this.failure;
  }

  private oldestRunning(): number {
    let oldest = Infinity;
    for (const s of this.running) if (s < oldest) oldest = s;
    return oldest;
  }

  private writeAll(buf: Uint8Array, done: number, position: number, seq: number): void {
    fs.write(this.file.fd, buf, done, buf.length - done, position + done, (err, n) => {
      if (!err && done + n < buf.length) return this.writeAll(buf, done + n, position, seq);
      if (err) this.failure ??= fromSystemError(err, this.file.path, 'writing');
      this.inFlight -= buf.length;
      this.running.delete(seq);
      if (!err) this.writeback?.wrote(buf.length);
      if (this.barriers.length > 0) {
        const oldest = this.oldestRunning();
        const ready = this.barriers.filter((b) => b.before <= oldest);
        this.barriers = this.barriers.filter((b) => b.before > oldest);
        for (const b of ready) b.resolve();
      }
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Waits for every write; throws the first error. */
  async drain(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
    try {
      await this.writeback?.done();
    } catch (err) {
      throw (this.failure = fromSystemError(err, this.file.path, 'flushing'));
    }
  }

  /** Waits for every write, ignoring errors (before giving up on the volume). */
  async settle(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((r) => this.waiters.push(r));
    await this.writeback?.done().catch(() => undefined);
  }
}
