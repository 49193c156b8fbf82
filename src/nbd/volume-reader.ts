// Reads a READ's runs of the volume file into its reply, at once or on libuv's thread pool.
//
// From the page cache a read is a memory copy: doing it at once costs much less than the
// thread pool's round trip (a hand-off to a worker, a wake-up, a callback on the event
// loop), which on nbdcopy's 256 KiB reads made the server spend about twice nbdkit's CPU
// per byte. From the disk a read waits for the device, and the event loop must not: every
// connection would stall behind it, where reads on the pool overlap. Node cannot tell
// which it will be (no mincore, no RWF_NOWAIT), so the reader measures: reads up to
// SYNC_READ_MAX_BYTES run at once while each goes at page-cache speed; after a slow one
// the next ASYNC_READS_AFTER_SLOW go to the pool, then one is tried at once again.
// Larger reads always go to the pool (the round trip is small beside their copy, and a
// long copy would hold up the other connections).
import fs from 'node:fs';
import type { BlockFile } from '../volume/block-file.js';
import type { LogicalReadRun } from '../volume/logical-io.js';

/** Reads up to this size may run at once, on the event loop. */
export const SYNC_READ_MAX_BYTES = 1 << 20;
/** A read at once is slow (it went to the device) when it takes longer than this... */
const SLOW_READ_BASE_MS = 1;
/** ...plus its size at this rate (bytes per millisecond: 1 GB/s; the page cache copies at 5 GB/s or more). */
const SLOW_READ_BYTES_PER_MS = 1e6;
/** Reads sent to the pool after a slow one before the next read at once. */
export const ASYNC_READS_AFTER_SLOW = 64;

/** Decides where each read runs, from how long the last reads at once took. Pure: no I/O. */
export class ReadPolicy {
  private asyncLeft = 0;

  /** True when a read of `bytes` should run at once. */
  atOnce(bytes: number): boolean {
    if (bytes > SYNC_READ_MAX_BYTES) return false;
    if (this.asyncLeft > 0) {
      this.asyncLeft--;
      return false;
    }
    return true;
  }

  /** Learns from a read of `bytes` that ran at once in `ms` milliseconds. */
  tookAtOnce(bytes: number, ms: number): void {
    if (ms > SLOW_READ_BASE_MS + bytes / SLOW_READ_BYTES_PER_MS) this.asyncLeft = ASYNC_READS_AFTER_SLOW;
  }
}

export class VolumeReader {
  private readonly policy = new ReadPolicy();

  constructor(private readonly file: BlockFile) {}

  /**
   * Reads every run now when it should (see above), throwing on failure; false when the
   * reads must go to the pool instead (readLater).
   */
  readNow(runs: LogicalReadRun[], bytes: number): boolean {
    // an overlay (a committed CP's journal, on a read-only open) is applied by file.read only
    if (runs.length === 0 || this.file.overlaid) {
      for (const run of runs) this.file.read(run.into, run.position);
      return true;
    }
    if (!this.policy.atOnce(bytes)) return false;
    const t0 = performance.now();
    for (const run of runs) this.file.read(run.into, run.position);
    this.policy.tookAtOnce(bytes, performance.now() - t0);
    return true;
  }

  /** Reads every run on the thread pool (they overlap); `done` once all are in, with the first error. */
  readLater(runs: LogicalReadRun[], done: (err: Error | null) => void): void {
    let pending = runs.length;
    let first: Error | null = null;
    for (const run of runs) {
      readFully(this.file.fd, run.into, run.position, (err) => {
        first ??= err;
        if (--pending === 0) done(first);
      });
    }
  }
}

/** Reads buf.length bytes at `position` on the thread pool; past the end of the file reads zeros. */
function readFully(fd: number, buf: Buffer, position: number, done: (err: Error | null) => void): void {
  let got = 0;
  const next = (): void => {
    fs.read(fd, buf, got, buf.length - got, position + got, (err, n) => {
      if (err) return done(err);
      if (n === 0) {
        buf.fill(0, got);
        return done(null);
      }
      got += n;
      if (got < buf.length) next();
      else done(null);
    });
  };
  next();
}
