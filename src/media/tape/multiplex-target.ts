// Writes several image streams into one tape file per tape (see multiplex-format.ts):
// each source gets a StreamTarget (a channel) that cuts its bytes into parts and queues
// them; one writer takes whichever part is ready first, so the tape waits only when no
// source has anything, and keeps the backup log of every member it writes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ImgstreamError, InvalidInputError, IoError, fromSystemError } from '../../core/errors.js';
import type { MediaPosition, StreamTarget } from '../medium.js';
import {
  DEFAULT_PART_BYTES,
  DEFAULT_RECORD_SIZE,
  END_OF_ARCHIVE_BYTES,
  MAX_LABEL_CHARS,
  MAX_PART_BYTES,
  MAX_RECORD_SIZE,
  TAPE_FORMAT,
  TAPE_FORMAT_VERSION,
  TAR_BLOCK,
  encodeJson,
  isValidStreamId,
  memberBytes,
  memberName,
  roundUp,
} from './tape-format.js';
import { MAX_ENTRY_BYTES, encodeBackupLog, encodeLogLine, type BackupLog, type LogEntry, type LogSource, type LoggedKind, type MultiplexLabel } from './multiplex-format.js';
import { TapeFileWriter } from './tape-file-writer.js';
import { crashPoint } from '../../volume/crash-point.js';
import { discardTapeFiles } from './tape-discard.js';
import { type MadeDirectory, type TapeKind, createPartial, listTapeFiles, nextTapeFileNumber, publishTapeFile, removeStalePartials, tapeFileName, tapeKind, usedBytes } from './tape-directory.js';

export interface MultiplexTapeOptions {
  tapes: string[];
  tapeSize?: number;
  recordSize?: number;
  partBytes?: number;
  nextTape?: (n: number) => Promise<string | null>;
  newTape?: boolean;
  label?: string;
  /** Names the multiplexed dump: its tape files' multiplex and log members. */
  id: string;
  /** The volumes, in the order given: source n is sources[n]. */
  sources: string[];
  /** Parts a source may have waiting for the tape (default 4): memory stays bounded, a faster source waits. */
  queueParts?: number;
}

/** One tape file of a multiplexed dump, once published, with its backup log. */
export interface MultiplexTapeFile {
  tape: string;
  /** Directory tapes: its number on the tape. */
  number?: number;
  sequence: number;
  log: BackupLog;
}

export interface MultiplexOutcome {
  files: MultiplexTapeFile[];
}

interface Item {
  ch: Channel;
  kind: 'part' | 'end' | 'aborted';
  data?: Buffer;
}

interface Channel {
  source: number;
  streamId: string;
  volume: { path: string; uuid: string };
  part: Buffer;
  fill: number;
  queued: number;
  roomWaiters: Array<() => void>;
  parts: number;
  bytes: number;
  /** Sequence of the tape file its label was last written to (0: none yet). */
  labelledIn: number;
  /** Its end or aborted member is written. */
  closed: boolean;
  state: 'open' | 'finishing' | 'aborted';
  /** Tape files (sequences) holding its members. */
  sequences: number[];
}

interface OpenFile {
  tape: string;
  kind: TapeKind;
  sequence: number;
  partial: string | null;
  fd: number;
  writer: TapeFileWriter;
  limit: number;
  entries: LogEntry[];
  logBytes: number;
  started: string;
  idleMs: number;
}

interface ClosedFile {
  tape: string;
  kind: TapeKind;
  sequence: number;
  partial: string | null;
  published: string | null;
  number?: number;
  log: BackupLog;
}

/** Bytes of a continued, end or aborted member (header and one block of JSON). */
const CLOSING_MEMBER = 2 * TAR_BLOCK;

/**
 * The writer of a multiplexed dump. channel() gives each source its StreamTarget; a
 * channel's finish() resolves only when every source is settled (finished, aborted, or
 * failed before it wrote: sourceFailed) and the tape files are complete and published,
 * as a tape target's finish() does for one stream. A killed dump leaves only partial
 * tape files, which the next writer removes. When every source failed, nothing is
 * published. An error of the tape itself fails every channel.
 */
export class MultiplexTapeWriter {
  readonly description: string;
  private readonly rs: number;
  private readonly partBytes: number;
  private readonly queueParts: number;
  private readonly created = new Date();
  private readonly host = os.hostname();
  private readonly tapes: string[];
  private tapeIndex = -1;
  private current: OpenFile | null = null;
  private readonly closed: ClosedFile[] = [];
  /** Directories made for new tapes: removed again, when empty, if the dump fails. */
  private readonly made: MadeDirectory[] = [];
  private readonly channels = new Map<number, Channel>();
  private readonly sourceState: LogSource[];
  private readonly settledSources = new Set<number>();
  private readonly ready: Item[] = [];
  private wake: (() => void) | null = null;
  private failure: ImgstreamError | null = null;
  private pendingWaitMs = 0;
  private readonly outcome: Promise<MultiplexOutcome>;

  constructor(private readonly opts: MultiplexTapeOptions) {
    this.rs = opts.recordSize ?? DEFAULT_RECORD_SIZE;
    this.partBytes = opts.partBytes ?? DEFAULT_PART_BYTES;
    this.queueParts = Math.max(1, opts.queueParts ?? 4);
    const rs = this.rs;
    if (opts.tapes.length === 0 || opts.tapes.some((t) => t === '')) throw new InvalidInputError('no tape given', 'give at least one tape: tape:DIR');
    if (!Number.isSafeInteger(rs) || rs <= 0 || rs % TAR_BLOCK !== 0 || rs > MAX_RECORD_SIZE) {
      throw new InvalidInputError(`tape record size ${rs} is not a multiple of 512 between 512 and ${MAX_RECORD_SIZE}`, 'use the default 10240 (20 x 512) or another multiple of 512');
    }
    if (!Number.isSafeInteger(this.partBytes) || this.partBytes <= 0 || this.partBytes > MAX_PART_BYTES) throw new InvalidInputError(`tape part size ${this.partBytes} is not between 1 and ${MAX_PART_BYTES} bytes`);
    if (opts.tapeSize !== undefined && (!Number.isSafeInteger(opts.tapeSize) || opts.tapeSize <= 0)) throw new InvalidInputError(`tape size ${opts.tapeSize} is not a positive number of bytes`, 'give the capacity of one tape, e.g. 800G');
    if (!isValidStreamId(opts.id)) throw new InvalidInputError(`multiplexed dump id "${opts.id}" cannot name tape members`);
    if (opts.label !== undefined && opts.label.length > MAX_LABEL_CHARS) throw new InvalidInputError(`tape label is longer than ${MAX_LABEL_CHARS} characters`);
    tapeKind(opts.tapes[0], opts.newTape ?? true);
    this.tapes = [...opts.tapes];
    this.description = `tape ${opts.tapes.join(',')}`;
    this.sourceState = opts.sources.map((p, i) => ({ source: i, volume: { path: p, uuid: null }, streamId: null, status: 'failed', parts: 0, bytes: 0 }));
    this.outcome = this.pump();
    this.outcome.catch(() => {});
  }

  /** Resolves when the multiplexed dump is published (or rejects: nothing was). */
  done(): Promise<MultiplexOutcome> {
    return this.outcome;
  }

  /** The StreamTarget of source n's stream. */
  channel(source: number, streamId: string, volume: { path: string; uuid: string }): StreamTarget {
    if (!isValidStreamId(streamId)) throw new InvalidInputError(`stream id "${streamId}" cannot name tape members`);
    if (this.channels.has(source) || this.settledSources.has(source)) throw new IoError(`source ${source} of the multiplexed dump opened twice`, 'this is a bug in imgstream: please report it');
    const ch: Channel = { source, streamId, volume, part: Buffer.allocUnsafe(this.partBytes), fill: 0, queued: 0, roomWaiters: [], parts: 0, bytes: 0, labelledIn: 0, closed: false, state: 'open', sequences: [] };
    this.channels.set(source, ch);
    Object.assign(this.sourceState[source], { streamId, volume: { path: volume.path, uuid: volume.uuid } });
    const self = this;
    const description = `${this.description} (multiplexed, ${volume.path})`;
    return {
      description,
      async write(data: Buffer): Promise<void> {
        self.check(ch, description);
        for (let off = 0; off < data.length; ) {
          const c = Math.min(self.partBytes - ch.fill, data.length - off);
          data.copy(ch.part, ch.fill, off, off + c);
          ch.fill += c;
          off += c;
          if (ch.fill === self.partBytes) await self.queuePart(ch);
        }
      },
      async finish(): Promise<MediaPosition> {
        self.check(ch, description);
        if (ch.fill > 0) await self.queuePart(ch);
        ch.state = 'finishing';
        self.enqueue({ ch, kind: 'end' });
        self.settle(source);
        const out = await self.outcome;
        return self.positionOf(ch, out);
      },
      async abort(): Promise<void> {
        if (ch.state !== 'open' || self.settledSources.has(source)) return;
        ch.state = 'aborted';
        // parts not yet on tape are dropped; those written stay, marked by an aborted member
        for (let i = self.ready.length - 1; i >= 0; i--) if (self.ready[i].ch === ch) self.ready.splice(i, 1);
        ch.queued = 0;
        for (const w of ch.roomWaiters.splice(0)) w();
        self.enqueue({ ch, kind: 'aborted' });
        self.settle(source);
      },
    };
  }

  /** Source n's dump failed: before it opened its channel, or after (its error goes in the log). */
  sourceFailed(source: number, error: string): void {
    const s = this.sourceState[source];
    if (s.status !== 'complete') s.error = error.length > 300 ? `${error.slice(0, 297)}...` : error;
    if (!this.settledSources.has(source)) this.settle(source);
  }

  private check(ch: Channel, description: string): void {
    if (this.failure) throw this.failure;
    if (ch.state !== 'open') throw new IoError(`${description}: the stream was already ${ch.state === 'aborted' ? 'aborted' : 'finished'}`, 'start a new dump');
  }

  private async queuePart(ch: Channel): Promise<void> {
    const data = ch.part.subarray(0, ch.fill);
    ch.part = Buffer.allocUnsafe(this.partBytes); // the queue and then the tar pack hold `data`
    ch.fill = 0;
    ch.queued++;
    this.enqueue({ ch, kind: 'part', data });
    while (ch.queued >= this.queueParts && ch.state === 'open' && !this.failure) await new Promise<void>((r) => ch.roomWaiters.push(r));
    if (this.failure) throw this.failure;
  }

  private enqueue(item: Item): void {
    this.ready.push(item);
    this.wakeUp();
  }

  private settle(source: number): void {
    this.settledSources.add(source);
    this.wakeUp();
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private allSettled(): boolean {
    return this.settledSources.size === this.opts.sources.length;
  }

  /** The writer: members in the order they became ready, until every source is settled. */
  private async pump(): Promise<MultiplexOutcome> {
    try {
      for (;;) {
        const item = this.ready.shift();
        if (!item) {
          if (this.allSettled()) break;
          const t0 = performance.now();
          await new Promise<void>((r) => (this.wake = r));
          // the tape waits only once it has started: the time sources take to plan is not idle
          if (this.current) this.pendingWaitMs += performance.now() - t0;
          continue;
        }
        const ch = item.ch;
        if (item.kind === 'part') {
          ch.queued = Math.max(0, ch.queued - 1);
          ch.roomWaiters.shift()?.();
          await this.writePart(ch, item.data!);
        } else if (item.kind === 'end') {
          await this.closeStream(ch, 'end');
          Object.assign(this.sourceState[ch.source], { status: 'complete', parts: ch.parts, bytes: ch.bytes });
        } else {
          if (ch.labelledIn > 0) await this.closeStream(ch, 'aborted');
          Object.assign(this.sourceState[ch.source], { status: ch.labelledIn > 0 ? 'aborted' : 'failed', parts: ch.parts, bytes: ch.bytes });
        }
      }
      const complete = [...this.channels.values()].filter((c) => this.sourceState[c.source].status === 'complete');
      if (complete.length === 0) {
        this.discard();
        const errs = this.sourceState.map((s) => `${s.volume.path}: ${s.error ?? 'failed'}`);
        throw new IoError(`multiplexed dump to ${this.description}: every source failed (${errs.join('; ')})`);
      }
      await this.closeFile(false);
      // continuation files first, the first tape file last: the dump appears at once
      for (let i = this.closed.length - 1; i >= 0; i--) {
        const c = this.closed[i];
        if (c.kind !== 'directory' || !c.partial) continue;
        c.number = publishTapeFile(c.tape, c.partial);
        c.published = path.join(c.tape, tapeFileName(c.number));
        c.partial = null;
      }
      crashPoint('multiplex-published', this.closed[0]?.tape ?? '');
      return { files: this.closed.map((c) => ({ tape: path.resolve(c.tape), ...(c.number !== undefined ? { number: c.number } : {}), sequence: c.sequence, log: c.log })) };
    } catch (err) {
      this.failure = fromSystemError(err, this.description, 'writing the multiplexed tape file');
      this.discard();
      for (const ch of this.channels.values()) for (const w of ch.roomWaiters.splice(0)) w();
      throw this.failure;
    }
  }

  private positionOf(ch: Channel, out: MultiplexOutcome): MediaPosition {
    const files = out.files.filter((f) => ch.sequences.includes(f.sequence));
    const first = files[0];
    return { kind: 'tape', location: first.tape, ...(first.number !== undefined ? { tapeFile: first.number } : {}), tapes: files.map((f) => f.tape), stream: ch.streamId };
  }

  // ---- the current tape file ----

  private async nextTapePath(): Promise<string> {
    if (this.tapeIndex + 1 < this.tapes.length) return this.tapes[this.tapeIndex + 1];
    const next = this.opts.nextTape ? await this.opts.nextTape(this.tapes.length + 1) : null;
    if (next === null || next === undefined || next === '') throw new InvalidInputError(`tape ${this.tapes[this.tapes.length - 1]} is full and no next tape was given`, 'give more tapes: tape:DIR1,DIR2,...');
    this.tapes.push(next);
    return next;
  }

  private async openFile(continuation: boolean): Promise<void> {
    const rs = this.rs;
    for (;;) {
      const tape = await this.nextTapePath();
      this.tapeIndex++;
      const kind = tapeKind(tape, this.opts.newTape ?? true);
      let files: ReturnType<typeof listTapeFiles> = [];
      if (kind === 'directory') {
        const dir = path.resolve(tape);
        if (this.closed.some((c) => c.kind === 'directory' && path.resolve(c.tape) === dir)) throw new InvalidInputError(`tape ${tape} is given twice for one dump`, 'give each tape directory once: tape:DIR1,DIR2,...');
        if (fs.existsSync(tape)) {
          removeStalePartials(tape);
          files = listTapeFiles(tape);
        }
      }
      if (continuation && files.length > 0) {
        throw new InvalidInputError(`tape ${tape} already holds ${files.length} tape file(s): the multiplexed dump continued from tape ${this.closed[this.closed.length - 1].tape} needs an empty tape`, 'give an empty tape (a new directory) as the next tape');
      }
      const sequence = this.closed.length + 1;
      const mux: MultiplexLabel = { format: TAPE_FORMAT, version: TAPE_FORMAT_VERSION, multiplex: true, id: this.opts.id, label: this.opts.label ?? null, sequence, recordSize: rs, created: this.created.toISOString(), host: this.host, volumes: this.opts.sources };
      const label = encodeJson(mux);
      const used = usedBytes(files);
      const limit = this.opts.tapeSize === undefined ? Infinity : Math.max(0, Math.floor((this.opts.tapeSize - used) / rs) * rs);
      const continuing = [...this.channels.values()].filter((c) => c.labelledIn === sequence - 1 && sequence > 1 && !c.closed);
      const least = roundUp(memberBytes(label.length) + (continuing.length + 1) * (2 * memberBytes(1024) + MAX_ENTRY_BYTES) + memberBytes(64 << 10) + END_OF_ARCHIVE_BYTES, rs);
      if (limit < least) {
        if (used === 0) throw new InvalidInputError(`tape ${tape} is too small: ${this.opts.tapeSize} bytes cannot hold one multiplexed tape file (at least ${least} bytes in ${rs}-byte records)`, 'give a larger tape size');
        continue;
      }
      let fd: number;
      let partial: string | null = null;
      if (kind === 'directory') {
        const created = createPartial(tape, nextTapeFileNumber(files));
        ({ fd, path: partial } = created);
        if (created.made) this.made.push(created.made);
      } else {
        try {
          fd = fs.openSync(tape, fs.constants.O_WRONLY);
        } catch (err) {
          throw fromSystemError(err, tape, 'opening the tape device');
        }
      }
      const what = kind === 'directory' ? `tape ${tape}` : `tape device ${tape}`;
      this.current = { tape, kind, sequence, partial, fd, limit, writer: new TapeFileWriter(fd, rs, limit, what, this.created), entries: [], logBytes: 0, started: new Date().toISOString(), idleMs: 0 };
      await this.addMember(null, 'multiplex', memberName.multiplex(this.opts.id), label);
      // a stream going on from the last tape is labelled at once, so it is in every tape file it spans
      for (const c of continuing) await this.addLabel(c);
      return;
    }
  }

  private async addMember(ch: Channel | null, kind: LoggedKind, name: string, data: Buffer, seq: number | null = null): Promise<void> {
    const f = this.current!;
    const offset = f.writer.archiveBytes;
    const waitedMs = Math.round(this.pendingWaitMs);
    this.pendingWaitMs = 0;
    f.idleMs += waitedMs;
    await f.writer.add(name, data);
    const entry: LogEntry = { source: ch ? ch.source : -1, stream: ch ? ch.streamId : this.opts.id, kind, seq, time: new Date().toISOString(), waitedMs, size: data.length, offset, record: Math.floor(offset / this.rs) };
    f.entries.push(entry);
    f.logBytes += Buffer.byteLength(encodeLogLine(entry));
    if (ch && ch.sequences.at(-1) !== f.sequence) ch.sequences.push(f.sequence);
  }

  private labelOf(ch: Channel): Buffer {
    return encodeJson({ format: TAPE_FORMAT, version: TAPE_FORMAT_VERSION, streamId: ch.streamId, label: this.opts.label ?? null, sequence: this.current!.sequence, firstPart: ch.parts, recordSize: this.rs, created: this.created.toISOString(), host: this.host, volume: ch.volume });
  }

  private async addLabel(ch: Channel): Promise<void> {
    await this.addMember(ch, 'label', memberName.label(ch.streamId), this.labelOf(ch));
    ch.labelledIn = this.current!.sequence;
  }

  /** Streams labelled in the current tape file and not closed: each needs a continued member if it closes now. */
  private openStreams(): number {
    let n = 0;
    for (const c of this.channels.values()) if (c.labelledIn === this.current!.sequence && !c.closed) n++;
    return n;
  }

  /** Bytes to keep free so the tape file can still be closed after `members` more members. */
  private reserve(members: number): number {
    const open = this.openStreams();
    const logBytes = this.current!.logBytes + 4096 + this.opts.sources.length * 512 + (open + members) * MAX_ENTRY_BYTES;
    return open * CLOSING_MEMBER + memberBytes(logBytes) + END_OF_ARCHIVE_BYTES;
  }

  private free(): number {
    const f = this.current!;
    return f.limit - f.writer.archiveBytes;
  }

  private async rollOver(): Promise<void> {
    await this.closeFile(true);
    await this.openFile(true);
  }

  private async writePart(ch: Channel, data: Buffer): Promise<void> {
    let off = 0;
    while (off < data.length) {
      if (!this.current) await this.openFile(false);
      if (ch.labelledIn !== this.current!.sequence) {
        const label = this.labelOf(ch);
        if (this.free() < memberBytes(label.length) + CLOSING_MEMBER + TAR_BLOCK * 2 + this.reserve(2)) {
          await this.rollOver();
          continue;
        }
        await this.addLabel(ch);
      }
      const free = this.free() - TAR_BLOCK - this.reserve(1);
      const room = free === Infinity ? Infinity : Math.max(0, Math.floor(free / TAR_BLOCK) * TAR_BLOCK);
      if (room === 0) {
        await this.rollOver();
        continue;
      }
      const k = Math.min(data.length - off, room);
      await this.addMember(ch, 'part', memberName.part(ch.streamId, ch.parts), data.subarray(off, off + k), ch.parts);
      ch.parts++;
      ch.bytes += k;
      off += k;
    }
  }

  private async closeStream(ch: Channel, kind: 'end' | 'aborted'): Promise<void> {
    if (!this.current) await this.openFile(false);
    if (ch.labelledIn !== this.current!.sequence) {
      if (this.free() < 3 * CLOSING_MEMBER + this.reserve(2)) await this.rollOver();
      if (ch.labelledIn !== this.current!.sequence) await this.addLabel(ch);
    }
    const error = kind === 'aborted' ? this.sourceState[ch.source].error : undefined;
    const body = encodeJson({ streamId: ch.streamId, sequence: this.current!.sequence, parts: ch.parts, bytes: ch.bytes, ...(error ? { error: error.slice(0, 200) } : {}) });
    await this.addMember(ch, kind, memberName[kind](ch.streamId), body);
    ch.closed = true;
  }

  private async closeFile(continued: boolean): Promise<void> {
    const f = this.current!;
    if (continued) {
      for (const c of this.channels.values()) {
        if (c.labelledIn !== f.sequence || c.closed) continue;
        await this.addMember(c, 'continued', memberName.continued(c.streamId), encodeJson({ streamId: c.streamId, sequence: f.sequence, parts: c.parts, bytes: c.bytes }));
      }
    }
    const sources: LogSource[] = this.sourceState.map((s) => {
      const c = this.channels.get(s.source);
      const here = c && c.sequences.includes(f.sequence);
      const status = here && continued && !c.closed ? 'continued' : s.status;
      return { ...s, ...(c ? { parts: c.parts, bytes: c.bytes } : {}), status };
    });
    const log: BackupLog = {
      header: { format: 'imgstream-backup-log', version: 1, id: this.opts.id, sequence: f.sequence, recordSize: this.rs, host: this.host, started: f.started, finished: new Date().toISOString(), idleMs: f.idleMs, sources },
      entries: f.entries,
    };
    await f.writer.add(memberName.log(this.opts.id), encodeBackupLog(log));
    await f.writer.close();
    try {
      if (f.kind === 'directory') fs.fsyncSync(f.fd);
      fs.closeSync(f.fd);
    } catch (err) {
      throw fromSystemError(err, f.tape, 'closing the tape file');
    }
    this.current = null;
    this.closed.push({ tape: f.tape, kind: f.kind, sequence: f.sequence, partial: f.partial, published: null, log });
  }

  /** Removes every trace of the dump it can (never throws). */
  private discard(): void {
    discardTapeFiles(this.current, this.closed.splice(0), this.made.splice(0));
    this.current = null;
  }
}
