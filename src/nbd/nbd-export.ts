// The one export a server offers: a volume's active file system (read-write, or
// read-only) or one of its snapshots (always read-only), and the single place where
// requests touch the volume.
//
// One queue: every connection submits its requests here, and they run in the order they
// arrived, as if one after the other. Writes, trims, zeroes and flushes run whole and
// synchronously when their turn comes (the Volume API is synchronous). Reads are the
// exception that makes reading fast: their data is read on libuv's thread pool, so
// consecutive reads (from any connection) overlap each other. A request that changes
// anything waits until the reads queued before it have finished, so no read ever sees a
// block freed or rewritten by a later request, and every read sees every change queued
// before it. Replies may therefore leave in a different order than requests arrived,
// which the protocol allows (clients match them by cookie).
//
// Durability: writes land in free blocks at once (write-anywhere) and become part of
// the volume at the next consistency point. FLUSH and FUA are answered only after a CP;
// a timer takes one every few seconds (through the queue, like a request), and close()
// takes the last.
//
// Tasks (runExclusive) go through the same queue: the control socket's requests (a
// snapshot, an image, a check) run between two NBD requests, after the reads before them
// and before anything queued after, so no request is ever half applied when they look.
import fs from 'node:fs';
import { ImgstreamError, VolumeFullError, fromSystemError } from '../errors.js';
import {
  CMD_DISC,
  CMD_FLAG_FAST_ZERO,
  CMD_FLAG_FUA,
  CMD_FLAG_NO_HOLE,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  NBD_EINVAL,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_EPERM,
  NBD_OK,
  SIMPLE_REPLY_BYTES,
  TFLAG_CAN_MULTI_CONN,
  TFLAG_HAS_FLAGS,
  TFLAG_READ_ONLY,
  TFLAG_SEND_FAST_ZERO,
  TFLAG_SEND_FLUSH,
  TFLAG_SEND_FUA,
  TFLAG_SEND_TRIM,
  TFLAG_SEND_WRITE_ZEROES,
  encodeSimpleReply,
  type BlockSizeInfo,
  type NbdRequest,
} from '../format/nbd-protocol.js';
import type { LogicalMap } from '../volume/logical-map.js';
import { planLogicalRead, writeLogicalBytes, zeroLogicalBytes, type LogicalReadRun } from '../volume/logical-io.js';
import type { Volume } from '../volume/volume.js';
import { BufferPool } from './buffer-pool.js';

/**
 * Largest READ or WRITE payload: 32 MiB, the protocol's default maximum, so clients that
 * never ask for block sizes are served too. TRIM and WRITE_ZEROES carry no payload and
 * may be longer.
 */
export const MAX_PAYLOAD_BYTES = 32 << 20;

/** Reads smaller than this are done at once: the thread pool's round trip would cost more. */
const ASYNC_READ_MIN_BYTES = 64 << 10;

export interface NbdExportOptions {
  /** The name clients ask for; the empty name (the default export) always finds it too. */
  name: string;
  /** Serve this snapshot (read-only) instead of the active file system. */
  snapshot?: string;
  /** Refuse writes even on the active file system. */
  readOnly: boolean;
}

export interface NbdExportStats {
  reads: number;
  writes: number;
  flushes: number;
  trims: number;
  writeZeroes: number;
  bytesRead: number;
  bytesWritten: number;
  /** Requests answered with an error. */
  errors: number;
  /** Consistency points that committed changes. */
  consistencyPoints: number;
}

/** Failures the server cannot pin on a request (a timer CP, a bug): reported, never thrown. */
export type ProblemReporter = (message: string) => void;

/** Receives a request's whole reply: header, and data after a successful READ (`pooled`: hand it back with recycle() once sent). */
export type ReplySink = (reply: Buffer, pooled: boolean) => void;

interface Job {
  request: NbdRequest | null; // null: a timed consistency point, or `task`
  /** A task from runExclusive(): runs alone, like a change. */
  task?: () => void;
  payload: Buffer | null;
  /** The payload came from payloadBuffer(): recycle it once the write is done. */
  pooledPayload: boolean;
  reply: ReplySink;
}

export class NbdExport {
  readonly name: string;
  readonly snapshot: string | null;
  readonly readOnly: boolean;
  readonly size: number;
  readonly transmissionFlags: number;
  readonly blockSizes: BlockSizeInfo;
  readonly description: string;
  readonly stats: NbdExportStats = { reads: 0, writes: 0, flushes: 0, trims: 0, writeZeroes: 0, bytesRead: 0, bytesWritten: 0, errors: 0, consistencyPoints: 0 };
  private readonly map: LogicalMap;
  private readonly buffers = new BufferPool();
  private readonly queue: Job[] = [];
  private readsInFlight = 0;
  private running = false;
  private idleWaiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;
  private cpQueued = false;
  /** A task that returned a promise is running: nothing else starts until it settles. */
  private taskRunning = false;

  constructor(private readonly vol: Volume, opts: NbdExportOptions, private readonly report: ProblemReporter = () => {}) {
    this.name = opts.name;
    this.snapshot = opts.snapshot ?? null;
    this.readOnly = opts.readOnly || opts.snapshot !== undefined || !vol.writable;
    this.map = vol.mapOf(opts.snapshot);
    this.size = vol.rootRecord.logicalSize;
    let flags = TFLAG_HAS_FLAGS | TFLAG_SEND_FLUSH | TFLAG_SEND_FUA | TFLAG_CAN_MULTI_CONN;
    if (this.readOnly) flags |= TFLAG_READ_ONLY;
    else flags |= TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES | TFLAG_SEND_FAST_ZERO;
    this.transmissionFlags = flags;
    // any byte offset and length works (partial blocks are merged); whole aligned blocks are fastest
    this.blockSizes = { minimum: 1, preferred: vol.blockSize, maximum: MAX_PAYLOAD_BYTES };
    this.description = `imgstream volume ${vol.path}${this.snapshot !== null ? ` (snapshot ${this.snapshot})` : ''}${this.readOnly ? ', read-only' : ''}`;
  }

  /** True when a client asking for `name` gets this export. */
  matches(name: string): boolean {
    return name === '' || name === this.name;
  }

  /**
   * The error a request gets before it runs (NBD_OK when it may run). A WRITE that gets
   * an error still has its payload on the wire: the connection reads and drops it.
   */
  validate(r: NbdRequest): number {
    const end = r.offset + r.length;
    switch (r.type) {
      case CMD_READ:
        if (r.flags & ~CMD_FLAG_FUA) return NBD_EINVAL;
        if (r.length > MAX_PAYLOAD_BYTES) return NBD_EINVAL;
        return end > this.size ? NBD_EINVAL : NBD_OK;
      case CMD_WRITE:
        if (r.flags & ~CMD_FLAG_FUA) return NBD_EINVAL;
        if (this.readOnly) return NBD_EPERM;
        if (r.length > MAX_PAYLOAD_BYTES) return NBD_EINVAL;
        return end > this.size ? NBD_ENOSPC : NBD_OK;
      case CMD_FLUSH:
        if (r.flags & ~CMD_FLAG_FUA) return NBD_EINVAL;
        return r.offset !== 0 || r.length !== 0 ? NBD_EINVAL : NBD_OK;
      case CMD_TRIM:
        if (r.flags & ~CMD_FLAG_FUA) return NBD_EINVAL;
        if (this.readOnly) return NBD_EPERM;
        return end > this.size ? NBD_EINVAL : NBD_OK;
      case CMD_WRITE_ZEROES:
        if (r.flags & ~(CMD_FLAG_FUA | CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO)) return NBD_EINVAL;
        if (this.readOnly) return NBD_EPERM;
        return end > this.size ? NBD_ENOSPC : NBD_OK;
      case CMD_DISC:
        return NBD_OK;
      default:
        return NBD_EINVAL; // CACHE, BLOCK_STATUS and unknown commands were never offered
    }
  }

  /**
   * Queues a request that passed validate(); `reply` gets its reply when it has run
   * (at once for everything but large reads). `payload` is a WRITE's data.
   */
  submit(r: NbdRequest, payload: Buffer | null, pooledPayload: boolean, reply: ReplySink): void {
    this.queue.push({ request: r, payload, pooledPayload, reply });
    this.run();
  }

  /** The reply to a request refused by validate(). */
  refuse(r: NbdRequest, error: number): Buffer {
    this.stats.errors++;
    return encodeSimpleReply(error, r.cookie);
  }

  /** A buffer for a WRITE payload that arrived in pieces; submit() it with pooledPayload set. */
  payloadBuffer(n: number): Buffer {
    return this.buffers.take(n);
  }

  /** Hands back a pooled READ reply once the socket has sent it. */
  recycle(b: Buffer): void {
    this.buffers.give(b);
  }

  /** Reports a failure no client can be told about. */
  reportProblem(message: string): void {
    this.report(message);
  }

  /** Takes a CP every `ms` milliseconds when something changed (0: only on FLUSH, FUA and close). */
  startTimer(ms: number): void {
    if (this.readOnly || ms <= 0) return;
    this.timer = setInterval(() => {
      if (this.cpQueued || !this.vol.hasUncommittedChanges) return;
      this.cpQueued = true;
      this.queue.push({ request: null, payload: null, pooledPayload: false, reply: () => {} });
      this.run();
    }, ms);
    this.timer.unref();
  }

  /**
   * Runs fn in the queue's order, alone: after every request queued before it (reads
   * included) and before any queued after. While a promise fn returned is pending, no
   * other request starts.
   */
  runExclusive<T>(fn: () => T | Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const task = () => {
        let out: T | Promise<T>;
        try {
          out = fn();
        } catch (err) {
          reject(err);
          return;
        }
        if (!(out instanceof Promise)) {
          resolve(out);
          return;
        }
        this.taskRunning = true;
        out.then(resolve, reject).finally(() => {
          this.taskRunning = false;
          this.run();
        });
      };
      this.queue.push({ request: null, task, payload: null, pooledPayload: false, reply: () => {} });
      this.run();
    });
  }

  /** Takes a consistency point now if anything changed (from a task: see runExclusive). Returns the generation. */
  commitNow(): number {
    this.commit();
    return this.vol.rootRecord.generation;
  }

  /** Stops the timer, lets every queued request finish, and takes the last CP. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    while (this.queue.length > 0 || this.readsInFlight > 0 || this.taskRunning) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
    this.commit();
  }

  // ---------------------------------------------------------------- the queue

  private run(): void {
    if (this.running) return; // a reply handed out below queued more: the loop picks it up
    this.running = true;
    try {
      while (this.queue.length > 0 && !this.taskRunning) {
        const job = this.queue[0];
        const isRead = job.request?.type === CMD_READ;
        if (!isRead && this.readsInFlight > 0) break; // a change waits for the reads before it
        this.queue.shift();
        if (job.task) job.task();
        else if (job.request === null) this.timedCommit();
        else if (isRead) this.read(job.request, job.reply);
        else {
          const error = this.apply(job.request, job.payload);
          if (job.pooledPayload) this.buffers.give(job.payload!); // writes are done with it
          if (error !== NBD_OK) this.stats.errors++;
          job.reply(encodeSimpleReply(error, job.request.cookie), false);
        }
      }
    } finally {
      this.running = false;
    }
    if (this.queue.length === 0 && this.readsInFlight === 0 && !this.taskRunning) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  private read(r: NbdRequest, reply: ReplySink): void {
    const buf = this.buffers.take(SIMPLE_REPLY_BYTES + r.length);
    let runs: LogicalReadRun[];
    try {
      runs = planLogicalRead(this.vol, this.map, r.offset, buf.subarray(SIMPLE_REPLY_BYTES));
      if (r.length < ASYNC_READ_MIN_BYTES || runs.length === 0) {
        for (const run of runs) this.vol.file.read(run.into, run.position);
        return this.readDone(r, buf, NBD_OK, reply);
      }
    } catch (err) {
      return this.readDone(r, buf, this.errorOf(err, 'READ'), reply);
    }
    this.readsInFlight++;
    let pending = runs.length;
    let error = NBD_OK;
    for (const run of runs) {
      readFully(this.vol.file.fd, run.into, run.position, (err) => {
        if (err && error === NBD_OK) error = this.errorOf(fromSystemError(err, this.vol.path, 'reading'), 'READ');
        if (--pending > 0) return;
        this.readsInFlight--;
        this.readDone(r, buf, error, reply);
        this.run(); // changes waiting for this read may go now
      });
    }
  }

  private readDone(r: NbdRequest, buf: Buffer, error: number, reply: ReplySink): void {
    if (error !== NBD_OK) {
      this.buffers.give(buf);
      this.stats.errors++;
      return reply(encodeSimpleReply(error, r.cookie), false);
    }
    this.stats.reads++;
    this.stats.bytesRead += r.length;
    reply(encodeSimpleReply(NBD_OK, r.cookie, buf), true);
  }

  private apply(r: NbdRequest, payload: Buffer | null): number {
    try {
      switch (r.type) {
        case CMD_WRITE:
          writeLogicalBytes(this.vol, r.offset, payload!);
          this.stats.writes++;
          this.stats.bytesWritten += r.length;
          break;
        case CMD_TRIM:
          zeroLogicalBytes(this.vol, r.offset, r.length);
          this.stats.trims++;
          break;
        case CMD_WRITE_ZEROES:
          // NO_HOLE is accepted and still unmaps: this volume is thin, zeros are never stored
          zeroLogicalBytes(this.vol, r.offset, r.length);
          this.stats.writeZeroes++;
          break;
        case CMD_FLUSH:
          this.stats.flushes++;
          this.commit();
          return NBD_OK;
      }
      if (r.flags & CMD_FLAG_FUA) this.commit();
      return NBD_OK;
    } catch (err) {
      return this.errorOf(err, r.type === CMD_WRITE ? 'WRITE' : r.type === CMD_FLUSH ? 'FLUSH' : 'zeroing');
    }
  }

  /** Takes a consistency point if anything changed (a no-op on read-only exports). */
  private commit(): void {
    if (this.readOnly || !this.vol.hasUncommittedChanges) return;
    this.vol.commit();
    this.stats.consistencyPoints++;
  }

  private timedCommit(): void {
    this.cpQueued = false;
    try {
      this.commit();
    } catch (err) {
      this.report(`consistency point failed: ${(err as Error).message}`);
    }
  }

  private errorOf(err: unknown, doing: string): number {
    if (err instanceof VolumeFullError) return NBD_ENOSPC;
    if (!(err instanceof ImgstreamError)) this.report(`internal error during ${doing}: ${(err as Error)?.stack ?? String(err)}`);
    else this.report(`${doing} failed: ${err.message}`);
    return NBD_EIO;
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
