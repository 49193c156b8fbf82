// What a server offers: a volume's active file system (read-write, or read-only) or one
// of its snapshots (always read-only) as its main export, plus read-only snapshot exports
// added while it serves (through the control socket: addSnapshotView), and the single
// place where requests touch the volume.
//
// One queue: every connection submits its requests here, and they run in the order they
// arrived, as if one after the other. Writes, trims, zeroes and flushes run whole and
// synchronously when their turn comes (the Volume API is synchronous). Reads are the
// exception that makes reading fast: their data may be read on libuv's thread pool
// (volume-reader.ts says when), so consecutive reads (from any connection) overlap each
// other. A request that changes anything waits until the reads queued before it have
// finished, so no read ever sees a block freed or rewritten by a later request, and
// every read sees every change queued before it. Replies may therefore leave in a different order than requests arrived,
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
import { ImgstreamError, VolumeFullError, fromSystemError } from '../core/errors.js';
import {
  CMD_BLOCK_STATUS,
  CMD_FLAG_DF,
  CMD_FLAG_REQ_ONE,
  CMD_FLAG_FUA,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  NBD_EIO,
  NBD_ENOSPC,
  NBD_OK,
  REPLY_FLAG_DONE,
  type BlockSizeInfo,
} from '../format/nbd-protocol.js';
import {
  commandName,
  encodeBlockStatusChunk,
  encodeDoneChunk,
  encodeErrorChunk,
  encodeSimpleReply,
  type NbdRequest,
} from '../format/nbd-transmission.js';
import type { JournalWriter } from '../journal/journal-writer.js';
import type { LogicalMap } from '../volume/logical-map.js';
import { planLogicalExtents, writeLogicalBytes, zeroLogicalBytes, type LogicalReadRun } from '../volume/logical-io.js';
import type { Volume } from '../volume/volume.js';
import { BufferPool } from './buffer-pool.js';
import { blockStatus } from './meta-context.js';
import { layoutReadReply } from './read-reply.js';
import { VolumeReader } from './volume-reader.js';
import { MAX_PAYLOAD_BYTES, transmissionFlags, validateRequest } from './request-rules.js';
import { ExportViews, describeExport, type ExportView, type NbdExportStats, type NbdSession } from './export-view.js';

export type { ExportView, NbdExportStats, NbdSession } from './export-view.js';

export { MAX_PAYLOAD_BYTES };

export interface NbdExportOptions {
  /** The name clients ask for; the empty name (the default export) always finds it too. */
  name: string;
  /** Serve this snapshot (read-only) instead of the active file system. */
  snapshot?: string;
  /** Refuse writes even on the active file system. */
  readOnly: boolean;
  /** Record every change in this write journal (continuous protection: ../journal). */
  journal?: JournalWriter;
}

/** Failures the server cannot pin on a request (a timer CP, a bug): reported, never thrown. */
export type ProblemReporter = (message: string) => void;

/** Receives a request's whole reply: header, and data after a successful READ (`pooled`: hand it back with recycle() once sent). */
export type ReplySink = (reply: Buffer, pooled: boolean) => void;

interface Job {
  request: NbdRequest | null; // null: a timed consistency point, or `task`
  session?: NbdSession;
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
  readonly blockSizes: BlockSizeInfo;
  readonly description: string;
  /** The export the server was started with. */
  readonly main: ExportView;
  /** The main export and the snapshot exports added while serving. */
  private readonly views: ExportViews;
  readonly stats: NbdExportStats = { reads: 0, writes: 0, flushes: 0, trims: 0, writeZeroes: 0, blockStatus: 0, bytesRead: 0, bytesWritten: 0, errors: 0, consistencyPoints: 0 };
  private readonly map: LogicalMap;
  private readonly buffers = new BufferPool();
  private readonly reader: VolumeReader;
  private readonly queue: Job[] = [];
  private readsInFlight = 0;
  private running = false;
  private idleWaiters: Array<() => void> = [];
  private timer: NodeJS.Timeout | null = null;
  private cpQueued = false;
  /** A task that returned a promise is running: nothing else starts until it settles. */
  private taskRunning = false;
  private readonly journal: JournalWriter | null;
  /** Journaled changes applied, their replies waiting for their records to be written. */
  private held: Job[] = [];
  /** Connections inside beginBatch()/endBatch(). */
  private batches = 0;

  constructor(private readonly vol: Volume, opts: NbdExportOptions, private readonly report: ProblemReporter = () => {}) {
    this.journal = opts.journal ?? null;
    this.reader = new VolumeReader(vol.file);
    this.name = opts.name;
    this.snapshot = opts.snapshot ?? null;
    this.readOnly = opts.readOnly || opts.snapshot !== undefined || !vol.writable;
    this.map = vol.mapOf(opts.snapshot);
    this.size = vol.rootRecord.logicalSize;
    // any byte offset and length works (partial blocks are merged); whole aligned blocks are fastest
    this.blockSizes = { minimum: 1, preferred: vol.blockSize, maximum: MAX_PAYLOAD_BYTES };
    this.description = describeExport(vol, this.snapshot, this.readOnly);
    this.main = { name: this.name, snapshot: this.snapshot, readOnly: this.readOnly, size: this.size, map: this.map, description: this.description, closed: false };
    this.views = new ExportViews(vol, this.main, report);
  }

  /** The volume served (for metadata contexts, evaluated against its planes). */
  get volume(): Volume {
    return this.vol;
  }

  /** The export a client asking for `name` gets: the empty name is the main one. */
  find(name: string): ExportView | undefined {
    return this.views.find(name);
  }

  /** Every export's name, the main one first. */
  names(): string[] {
    return this.views.names();
  }

  /** Adds a read-only export of `snapshot` named `name` (from a task: see runExclusive); the caller keeps the snapshot pinned while it exists. */
  addSnapshotView(name: string, snapshot: string): ExportView {
    return this.views.add(name, snapshot);
  }

  /** Removes an export added by addSnapshotView; its open connections get ESHUTDOWN from now on. */
  removeView(name: string): void {
    this.views.remove(name);
  }

  /** The transmission flags a connection to `view` gets (DF only with structured replies). */
  transmissionFlags(view: ExportView, structured: boolean): number {
    return transmissionFlags(view, structured);
  }

  /** The error a request gets before it runs (NBD_OK when it may run): see request-rules.ts. */
  validate(s: NbdSession, r: NbdRequest): number {
    return validateRequest(s, r, this.size);
  }

  /**
   * Queues a request that passed validate(); `reply` gets its reply when it has run
   * (at once for everything but large reads). `payload` is a WRITE's data.
   */
  submit(s: NbdSession, r: NbdRequest, payload: Buffer | null, pooledPayload: boolean, reply: ReplySink): void {
    this.queue.push({ request: r, session: s, payload, pooledPayload, reply });
    this.run();
  }

  /** The reply to a request refused by validate(). */
  refuse(s: NbdSession, r: NbdRequest, error: number): Buffer {
    this.stats.errors++;
    return errorReply(s, r, error);
  }

  /** A buffer for a WRITE payload that arrived in pieces; submit() it with pooledPayload set. */
  payloadBuffer(n: number): Buffer {
    return this.buffers.take(n);
  }

  /** Hands back a pooled READ reply once the socket has sent it. */
  recycle(b: Buffer): void {
    this.buffers.give(b);
  }

  /**
   * A connection is handling the requests it has read (its replies corked): changes are
   * answered together at endBatch() or releaseHeld(), after one write of their journal
   * records, instead of one write per request.
   */
  beginBatch(): void {
    this.batches++;
  }

  endBatch(): void {
    this.batches--;
    this.releaseHeld();
  }

  /**
   * Answers the journaled changes held so far, once their records are written (a journal
   * that cannot be written fails them: EIO). True when it answered any.
   */
  releaseHeld(): boolean {
    if (this.held.length === 0) return false;
    const jobs = this.held;
    this.held = [];
    let error = NBD_OK;
    try {
      this.journal?.flush();
    } catch (err) {
      error = this.errorOf(err, 'WRITE');
      this.stats.errors += jobs.length;
    }
    for (const job of jobs) job.reply(encodeSimpleReply(error, job.request!.cookie), false);
    return true;
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
        const type = job.request?.type;
        const isRead = type === CMD_READ;
        // a change waits for the reads before it (block status changes nothing)
        if (!isRead && type !== CMD_BLOCK_STATUS && this.readsInFlight > 0) break;
        this.queue.shift();
        if (job.task) job.task();
        else if (job.request === null) this.timedCommit();
        else if (isRead) this.read(job.session!, job.request, job.reply);
        else if (type === CMD_BLOCK_STATUS) job.reply(this.blockStatus(job.session!, job.request), false);
        else {
          const error = this.apply(job.request, job.payload);
          if (job.pooledPayload) this.buffers.give(job.payload!); // writes are done with it
          if (error !== NBD_OK) this.stats.errors++;
          // a journaled change is answered once its record is written (releaseHeld)
          if (this.journal !== null && error === NBD_OK) this.held.push(job);
          else job.reply(encodeSimpleReply(error, job.request.cookie), false);
        }
      }
    } finally {
      this.running = false;
    }
    if (this.batches === 0) this.releaseHeld();
    if (this.queue.length === 0 && this.readsInFlight === 0 && !this.taskRunning) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  /**
   * A READ: simple replies put the data after a 16-byte header; structured ones send one
   * OFFSET_DATA chunk when the range is all data or the client set DF, else one chunk per
   * piece, OFFSET_HOLE for unmapped runs (no data on the wire) and OFFSET_DATA for the
   * rest, all in one pooled buffer.
   */
  private read(s: NbdSession, r: NbdRequest, reply: ReplySink): void {
    if (this.views.lost(s.view)) {
      this.stats.errors++;
      return reply(errorReply(s, r, NBD_EIO), false);
    }
    if (s.structured && r.length === 0) return reply(encodeDoneChunk(r.cookie), false);
    let buf: Buffer;
    let runs: LogicalReadRun[];
    try {
      const extents = planLogicalExtents(this.vol, s.view.map, r.offset, r.length);
      ({ buf, runs } = layoutReadReply(r, extents, s.structured && !(r.flags & CMD_FLAG_DF), s.structured, (n) => this.buffers.take(n)));
    } catch (err) {
      this.stats.errors++;
      return reply(errorReply(s, r, this.errorOf(err, 'READ')), false);
    }
    try {
      if (this.reader.readNow(runs, r.length)) return this.readDone(s, r, buf, NBD_OK, reply);
    } catch (err) {
      return this.readDone(s, r, buf, this.errorOf(err, 'READ'), reply);
    }
    this.readsInFlight++;
    this.reader.readLater(runs, (err) => {
      this.readsInFlight--;
      this.readDone(s, r, buf, err ? this.errorOf(fromSystemError(err, this.vol.path, 'reading'), 'READ') : NBD_OK, reply);
      this.run(); // changes waiting for this read may go now
    });
  }

  private readDone(s: NbdSession, r: NbdRequest, buf: Buffer, error: number, reply: ReplySink): void {
    if (error !== NBD_OK) {
      this.buffers.give(buf);
      this.stats.errors++;
      return reply(errorReply(s, r, error), false);
    }
    this.stats.reads++;
    this.stats.bytesRead += r.length;
    reply(buf, true);
  }

  /** BLOCK_STATUS: one chunk per selected context, from the map (and the context's image), never from data. */
  private blockStatus(s: NbdSession, r: NbdRequest): Buffer {
    if (this.views.lost(s.view)) {
      this.stats.errors++;
      return errorReply(s, r, NBD_EIO);
    }
    try {
      const chunks = s.contexts.map((ctx, i) => {
        let extents = blockStatus(s.view.map, this.vol.blockSize, ctx, r.offset, r.length);
        if (r.flags & CMD_FLAG_REQ_ONE) extents = extents.slice(0, 1);
        return encodeBlockStatusChunk(i === s.contexts.length - 1 ? REPLY_FLAG_DONE : 0, r.cookie, contextId(i), extents);
      });
      this.stats.blockStatus++;
      return Buffer.concat(chunks);
    } catch (err) {
      this.stats.errors++;
      return errorReply(s, r, this.errorOf(err, 'BLOCK_STATUS'));
    }
  }

  private apply(r: NbdRequest, payload: Buffer | null): number {
    try {
      return this.applyOnce(r, payload);
    } catch (err) {
      // blocks freed since the last CP (rewritten or trimmed) are free only after the
      // next one: take it and try once more before telling the client ENOSPC. A write's new
      // blocks are all allocated before any is written; should the map fail to grow part
      // way, the retry writes the same bytes again.
      if (err instanceof VolumeFullError && this.vol.hasUncommittedChanges && !this.readOnly) {
        try {
          this.commit();
          return this.applyOnce(r, payload);
        } catch (again) {
          return this.errorOf(again, doingOf(r));
        }
      }
      return this.errorOf(err, doingOf(r));
    }
  }

  private applyOnce(r: NbdRequest, payload: Buffer | null): number {
    switch (r.type) {
      case CMD_WRITE:
        writeLogicalBytes(this.vol, r.offset, payload!);
        this.journal?.wrote(r.offset, payload!);
        this.stats.writes++;
        this.stats.bytesWritten += r.length;
        break;
      case CMD_TRIM:
        zeroLogicalBytes(this.vol, r.offset, r.length);
        this.journal?.zeroed(r.offset, r.length);
        this.stats.trims++;
        break;
      case CMD_WRITE_ZEROES:
        // NO_HOLE is accepted and still unmaps: this volume is thin, zeros are never stored
        zeroLogicalBytes(this.vol, r.offset, r.length);
        this.journal?.zeroed(r.offset, r.length);
        this.stats.writeZeroes++;
        break;
      case CMD_FLUSH:
        this.stats.flushes++;
        this.commit();
        return NBD_OK;
    }
    if (r.flags & CMD_FLAG_FUA) this.commit();
    this.fullSaid = false;
    return NBD_OK;
  }

  /** Takes a consistency point if anything changed (a no-op on read-only exports); the journal is on disk after it. */
  private commit(): void {
    if (this.readOnly) return;
    if (!this.vol.hasUncommittedChanges) return this.journal?.sync();
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

  /** A write was refused for want of space, and none has succeeded since: said once, not for every write. */
  private fullSaid = false;

  private errorOf(err: unknown, doing: string): number {
    if (err instanceof VolumeFullError) {
      // the client is told ENOSPC; the server's log says why, once until a write succeeds again
      if (!this.fullSaid) this.report(`${doing} refused: ${err.message}${err.hint ? `; ${err.hint}` : ''} (clients get ENOSPC until space is freed)`);
      this.fullSaid = true;
      return NBD_ENOSPC;
    }
    if (!(err instanceof ImgstreamError)) this.report(`internal error during ${doing}: ${(err as Error)?.stack ?? String(err)}`);
    else this.report(`${doing} failed: ${err.message}`);
    return NBD_EIO;
  }
}

function doingOf(r: NbdRequest): string {
  return r.type === CMD_WRITE ? 'WRITE' : r.type === CMD_FLUSH ? 'FLUSH' : 'zeroing';
}

/** The id the i-th selected metadata context gets (ids are per connection; 0 is avoided). */
export function contextId(i: number): number {
  return i + 1;
}

/** An error reply: a structured ERROR chunk (with a message) once negotiated, else a simple reply. */
function errorReply(s: NbdSession, r: NbdRequest, error: number): Buffer {
  if (!s.structured) return encodeSimpleReply(error, r.cookie);
  return encodeErrorChunk(error, r.cookie, `${commandName(r.type)} failed with errno ${error}`);
}
