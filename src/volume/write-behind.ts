// Writes of block data that need not be done before the caller goes on: they run on
// libuv's threads while the caller reads and compares what comes next, with a bound on the
// bytes in flight; written() tells when those started so far are done (before a sync
// that acknowledges them, or before their buffer is reused). For data that lands only on
// VBNs the volume's last CP does not use (import, restore, mirror transfers): nothing
// reads them back before the CP, whose sync comes after drain(). A buffer given must not
// change until written() says its write is done.
//
// With `direct`, whole aligned blocks are written with O_DIRECT, past the page cache: as
// they are when they lie in page-aligned memory (isDirectAligned), else copied into
// page-aligned slots first (see direct-appender.ts for why: on these
// machines the page cache costs more than the copy). Anything else, or where direct I/O
// is refused (EINVAL), goes through the page cache.
import fs from 'node:fs';
import { DIRECT_UNIT, alignedBuffers, isDirectAligned, openDirect } from '../fs/direct-io.js';
import { fromSystemError } from '../core/errors.js';
import { EarlyWriteback } from '../fs/writeback.js';
import type { BlockFile } from './block-file.js';

const MAX_IN_FLIGHT = 32 << 20;
const DIRECT_SLOT_BYTES = 1 << 20;
const DIRECT_SLOTS = 16;

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
  private directFd: number | null = null;
  /** The direct descriptor after a refusal, closed by close(). */
  private refusedFd: number | null = null;
  private readonly freeSlots: Buffer[] = [];

  /**
   * `opts.writeback`: start syncs as the writes go (see EarlyWriteback), for a caller that
   * ends in a sync. `opts.direct`: write whole blocks with direct I/O where possible;
   * close() must then be called. `opts.slots` replaces the aligned slots of 1 MiB (tests
   * give unaligned ones, which direct writes refuse).
   */
  constructor(private readonly file: BlockFile, opts: { maxBytes?: number; writeback?: boolean; direct?: boolean; slots?: Buffer[] } = {}) {
    this.maxBytes = opts.maxBytes ?? MAX_IN_FLIGHT;
    this.writeback = opts.writeback ? new EarlyWriteback(file.fd) : null;
    if (opts.direct) {
      this.directFd = openDirect(file.path); // null: no direct I/O here, the page cache it is
      if (this.directFd !== null) this.freeSlots.push(...(opts.slots ?? alignedBuffers(DIRECT_SLOTS, DIRECT_SLOT_BYTES)));
    }
  }

  private readonly maxBytes: number;

  /** True while whole blocks bypass the page cache. */
  get direct(): boolean {
    return this.directFd !== null;
  }

  /** Starts writing `buf` at `position`; waits first while too much is in flight. Throws an earlier write's error. */
  async write(buf: Uint8Array, position: number): Promise<void> {
    if (this.failure) throw this.failure;
    const whole = position % DIRECT_UNIT === 0 && buf.length % DIRECT_UNIT === 0;
    if (this.directFd !== null && whole && isDirectAligned(buf)) {
      // aligned memory already (a stream's blocks in its read buffers): written as it is
      while (this.inFlight > 0 && this.inFlight + buf.length > this.maxBytes) await new Promise<void>((r) => this.waiters.push(r));
      if (this.failure) throw this.failure;
      this.start(buf, position, null, true);
      return;
    }
    if (this.directFd !== null && whole) {
      for (let from = 0; from < buf.length; from += DIRECT_SLOT_BYTES) {
        const piece = buf.subarray(from, Math.min(buf.length, from + DIRECT_SLOT_BYTES));
        while (this.freeSlots.length === 0) await new Promise<void>((r) => this.waiters.push(r));
        if (this.failure) throw this.failure;
        const slot = this.freeSlots.pop()!;
        slot.set(piece);
        this.start(slot.subarray(0, piece.length), position + from, slot, true);
      }
      return;
    }
    if (this.failure) throw this.failure;
    while (this.inFlight > 0 && this.inFlight + buf.length > this.maxBytes) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
    this.start(buf, position, null, false);
  }

  /** Starts one write, `direct` or through the page cache; `slot` is the aligned copy it is made from, returned when done. */
  private start(buf: Uint8Array, position: number, slot: Buffer | null, direct: boolean): void {
    this.inFlight += buf.length;
    const seq = this.started++;
    this.running.add(seq);
    if (SLOW_WRITES_MS > 0) setTimeout(() => this.writeAll(buf, 0, position, seq, slot, direct), SLOW_WRITES_MS);
    else this.writeAll(buf, 0, position, seq, slot, direct);
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

  private writeAll(buf: Uint8Array, done: number, position: number, seq: number, slot: Buffer | null, wantDirect: boolean): void {
    const direct = wantDirect ? this.directFd : null;
    fs.write(direct ?? this.file.fd, buf, done, buf.length - done, position + done, (err, n) => {
      if (err && direct !== null && err.code === 'EINVAL') {
        // refused (alignment the device will not take): this and every later write through
        // the page cache. The descriptor stays open until close(): writes queued on it still
        // run, and must get EINVAL too, not EBADF or another file that reused its number.
        if (this.directFd === direct) {
          this.directFd = null;
          this.refusedFd = direct;
        }
        return this.writeAll(buf, done, position, seq, slot, false);
      }
      if (!err && done + n < buf.length) return this.writeAll(buf, done + n, position, seq, slot, direct !== null);
      if (err) this.failure ??= fromSystemError(err, this.file.path, 'writing');
      this.inFlight -= buf.length;
      this.running.delete(seq);
      if (slot) this.freeSlots.push(slot);
      if (!err && direct === null) this.writeback?.wrote(buf.length);
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

  /** Waits for every write (ignoring errors) and closes the direct descriptor. */
  async close(): Promise<void> {
    await this.settle();
    for (const fd of [this.directFd, this.refusedFd]) if (fd !== null) fs.closeSync(fd);
    this.directFd = null;
    this.refusedFd = null;
  }
}
