// The tape files of a multiplexed dump (see multiplex-format.ts), one per tape: each is
// opened on its tape (a directory's next tape file, written as a partial file, or a
// device at its position) with its multiplex label; members are added as the writer
// (multiplex-target.ts) hands them over, each logged; room is kept so the file can
// always be closed (a continued member per open stream, the backup log, the end of the
// archive), and when the next member would not fit the file is closed and the dump rolls
// over to the next tape. At the end the directory tapes' files are published, the first
// one last; a failed dump discards every file it wrote.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { InvalidInputError, fromSystemError } from '../../core/errors.js';
import { END_OF_ARCHIVE_BYTES, TAPE_FORMAT, TAPE_FORMAT_VERSION, TAR_BLOCK, encodeJson, memberBytes, memberName, roundUp } from './tape-format.js';
import { MAX_ENTRY_BYTES, encodeBackupLog, encodeLogLine, type BackupLog, type LogEntry, type LogSource, type LoggedKind, type MultiplexLabel } from './multiplex-format.js';
import { TapeFileWriter } from './tape-file-writer.js';
import { crashPoint } from '../../volume/crash-point.js';
import { discardTapeFiles } from './tape-discard.js';
import { OrphanContinuations } from './tape-orphans.js';
import { TapeLocks } from './tape-locks.js';
import { type MadeDirectory, type TapeKind, listTapeFiles, openNextTapeFile, publishTapeFile, removeStalePartials, tapeFileName, tapeKind, usedBytes } from './tape-directory.js';

/** One tape file of a multiplexed dump, once published, with its backup log. */
export interface MultiplexTapeFile {
  tape: string;
  /** Directory tapes: its number on the tape. */
  number?: number;
  sequence: number;
  log: BackupLog;
}

/** What the tape files know of one source's stream (the writer's channel). */
export interface MultiplexStream {
  source: number;
  streamId: string;
  volume: { path: string; uuid: string };
  parts: number;
  bytes: number;
  /** Sequence of the tape file its label was last written to (0: none yet). */
  labelledIn: number;
  /** Its end or aborted member is written. */
  closed: boolean;
  /** Tape files (sequences) holding its members. */
  sequences: number[];
}

export interface MultiplexTapeFilesOptions {
  tapes: string[];
  tapeSize?: number;
  recordSize: number;
  nextTape?: (n: number) => Promise<string | null>;
  newTape?: boolean;
  label?: string;
  /** Told one line for each tape file of a killed dump removed from the tapes (tape-orphans.ts). */
  notice?: (line: string) => void;
  /** The multiplexed dump's id: its multiplex and log members. */
  id: string;
  /** The volumes, in the order given. */
  sources: string[];
  /** Every source's stream opened so far, by source number (the writer's, read as it grows). */
  streams: Map<number, MultiplexStream>;
  /** Every source's line of the backup log (the writer keeps status and errors). */
  sourceState: LogSource[];
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

export class MultiplexTapeFiles {
  private readonly rs: number;
  private readonly created = new Date();
  private readonly host = os.hostname();
  private readonly tapes: string[];
  private tapeIndex = -1;
  private current: OpenFile | null = null;
  private readonly closed: ClosedFile[] = [];
  /** Directories made for new tapes: removed again, when empty, if the dump fails. */
  private readonly made: MadeDirectory[] = [];
  /** Time the tape waited for a member since the last one was added. */
  private pendingWaitMs = 0;
  private readonly orphans: OrphanContinuations;
  private readonly locks: TapeLocks;
  private locked: Promise<void> | null = null;

  constructor(private readonly opts: MultiplexTapeFilesOptions) {
    this.rs = opts.recordSize;
    this.tapes = [...opts.tapes];
    this.orphans = new OrphanContinuations(opts.notice);
    this.locks = new TapeLocks(opts.notice);
  }

  /** Waits while another dump writes to these tapes, then holds them until finish() or discard() (tape-locks.ts). */
  lockTapes(): Promise<void> {
    if (!this.locked) {
      this.locked = this.locks.take(this.opts.tapes);
      this.locked.catch(() => {}); // a wait a stop ended: the stop is the error said
    }
    return this.locked;
  }

  /** A tape file is open: the tape has started, so time spent waiting for members is idle time. */
  get started(): boolean {
    return this.current !== null;
  }

  /** The tape waited `ms` for the next member (it goes in that member's log entry). */
  waited(ms: number): void {
    this.pendingWaitMs += ms;
  }

  /** Writes `data` as part members of `s`, labelling it first in a tape file it is not labelled in, rolling over when full. */
  async writePart(s: MultiplexStream, data: Buffer): Promise<void> {
    let off = 0;
    while (off < data.length) {
      if (!this.current) await this.openFile(false);
      if (s.labelledIn !== this.current!.sequence) {
        const label = this.labelOf(s);
        if (this.free() < memberBytes(label.length) + CLOSING_MEMBER + TAR_BLOCK * 2 + this.reserve(2)) {
          await this.rollOver();
          continue;
        }
        await this.addLabel(s);
      }
      const free = this.free() - TAR_BLOCK - this.reserve(1);
      const room = free === Infinity ? Infinity : Math.max(0, Math.floor(free / TAR_BLOCK) * TAR_BLOCK);
      if (room === 0) {
        await this.rollOver();
        continue;
      }
      const k = Math.min(data.length - off, room);
      await this.addMember(s, 'part', memberName.part(s.streamId, s.parts), data.subarray(off, off + k), s.parts);
      s.parts++;
      s.bytes += k;
      off += k;
    }
  }

  /** Writes the end (or aborted, with the source's error) member of `s`. */
  async closeStream(s: MultiplexStream, kind: 'end' | 'aborted', error?: string): Promise<void> {
    if (!this.current) await this.openFile(false);
    if (s.labelledIn !== this.current!.sequence) {
      if (this.free() < 3 * CLOSING_MEMBER + this.reserve(2)) await this.rollOver();
      if (s.labelledIn !== this.current!.sequence) await this.addLabel(s);
    }
    const body = encodeJson({ streamId: s.streamId, sequence: this.current!.sequence, parts: s.parts, bytes: s.bytes, ...(error ? { error: error.slice(0, 200) } : {}) });
    await this.addMember(s, kind, memberName[kind](s.streamId), body);
    s.closed = true;
  }

  /** Closes the last tape file and publishes the directory tapes' files (continuations first, the first tape file last: the dump appears at once). */
  async finish(): Promise<MultiplexTapeFile[]> {
    await this.closeFile(false);
    for (let i = this.closed.length - 1; i >= 0; i--) {
      const c = this.closed[i];
      if (c.kind !== 'directory' || !c.partial) continue;
      crashPoint('tape-publish', c.tape);
      c.number = publishTapeFile(c.tape, c.partial);
      c.published = path.join(c.tape, tapeFileName(c.number));
      c.partial = null;
    }
    crashPoint('multiplex-published', this.closed[0]?.tape ?? '');
    this.locks.release();
    return this.closed.map((c) => ({ tape: path.resolve(c.tape), ...(c.number !== undefined ? { number: c.number } : {}), sequence: c.sequence, log: c.log }));
  }

  /** Removes every trace of the dump it can (never throws). */
  discard(): void {
    discardTapeFiles(this.current, this.closed.splice(0), this.made.splice(0));
    this.current = null;
    this.locks.release();
  }

  private async nextTapePath(): Promise<string> {
    if (this.tapeIndex + 1 < this.tapes.length) return this.tapes[this.tapeIndex + 1];
    const next = this.opts.nextTape ? await this.opts.nextTape(this.tapes.length + 1) : null;
    if (next === null || next === undefined || next === '') throw new InvalidInputError(`tape ${this.tapes[this.tapes.length - 1]} is full and no next tape was given`, 'give more tapes: tape:DIR1,DIR2,...');
    this.tapes.push(next);
    return next;
  }

  private async openFile(continuation: boolean): Promise<void> {
    await this.lockTapes();
    const rs = this.rs;
    for (;;) {
      const tape = await this.nextTapePath();
      this.tapeIndex++;
      const kind = tapeKind(tape, this.opts.newTape ?? true);
      await this.orphans.sweep(this.tapes); // before the stale partials go: they tell the orphans
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
      const continuing = [...this.opts.streams.values()].filter((c) => c.labelledIn === sequence - 1 && sequence > 1 && !c.closed);
      const least = roundUp(memberBytes(label.length) + (continuing.length + 1) * (2 * memberBytes(1024) + MAX_ENTRY_BYTES) + memberBytes(64 << 10) + END_OF_ARCHIVE_BYTES, rs);
      if (limit < least) {
        if (used === 0) throw new InvalidInputError(`tape ${tape} is too small: ${this.opts.tapeSize} bytes cannot hold one multiplexed tape file (at least ${least} bytes in ${rs}-byte records)`, 'give a larger tape size');
        continue;
      }
      const { fd, partial, made, what } = openNextTapeFile(tape, kind, files);
      if (made) this.made.push(made);
      this.current = { tape, kind, sequence, partial, fd, limit, writer: new TapeFileWriter(fd, rs, limit, what, this.created), entries: [], logBytes: 0, started: new Date().toISOString(), idleMs: 0 };
      await this.addMember(null, 'multiplex', memberName.multiplex(this.opts.id), label);
      // a stream going on from the last tape is labelled at once, so it is in every tape file it spans
      for (const c of continuing) await this.addLabel(c);
      return;
    }
  }

  private async addMember(s: MultiplexStream | null, kind: LoggedKind, name: string, data: Buffer, seq: number | null = null): Promise<void> {
    const f = this.current!;
    const offset = f.writer.archiveBytes;
    const waitedMs = Math.round(this.pendingWaitMs);
    this.pendingWaitMs = 0;
    f.idleMs += waitedMs;
    await f.writer.add(name, data);
    const entry: LogEntry = { source: s ? s.source : -1, stream: s ? s.streamId : this.opts.id, kind, seq, time: new Date().toISOString(), waitedMs, size: data.length, offset, record: Math.floor(offset / this.rs) };
    f.entries.push(entry);
    f.logBytes += Buffer.byteLength(encodeLogLine(entry));
    if (s && s.sequences.at(-1) !== f.sequence) s.sequences.push(f.sequence);
  }

  private labelOf(s: MultiplexStream): Buffer {
    return encodeJson({ format: TAPE_FORMAT, version: TAPE_FORMAT_VERSION, streamId: s.streamId, label: this.opts.label ?? null, sequence: this.current!.sequence, firstPart: s.parts, recordSize: this.rs, created: this.created.toISOString(), host: this.host, volume: s.volume });
  }

  private async addLabel(s: MultiplexStream): Promise<void> {
    await this.addMember(s, 'label', memberName.label(s.streamId), this.labelOf(s));
    s.labelledIn = this.current!.sequence;
  }

  /** Streams labelled in the current tape file and not closed: each needs a continued member if it closes now. */
  private openStreams(): number {
    let n = 0;
    for (const c of this.opts.streams.values()) if (c.labelledIn === this.current!.sequence && !c.closed) n++;
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

  private async closeFile(continued: boolean): Promise<void> {
    const f = this.current!;
    if (continued) {
      for (const c of this.opts.streams.values()) {
        if (c.labelledIn !== f.sequence || c.closed) continue;
        await this.addMember(c, 'continued', memberName.continued(c.streamId), encodeJson({ streamId: c.streamId, sequence: f.sequence, parts: c.parts, bytes: c.bytes }));
      }
    }
    const sources: LogSource[] = this.opts.sourceState.map((s) => {
      const c = this.opts.streams.get(s.source);
      const here = c && c.sequences.includes(f.sequence);
      // one that ended on an earlier tape is not listed as if it were here ("complete, 0 parts")
      if (c && c.closed && !here) return { ...s, parts: c.parts, bytes: c.bytes, status: 'earlier', endedIn: c.sequences.at(-1) };
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
}
