// Writes several image streams into one tape file per tape (see multiplex-format.ts):
// each source gets a StreamTarget (a channel) that cuts its bytes into parts and queues
// them; one writer takes whichever part is ready first, so the tape waits only when no
// source has anything. The tape files themselves (members, backup log, room to close,
// rolling over to the next tape, publishing) are multiplex-tape-files.ts.
import { ImgstreamError, InvalidInputError, IoError, fromSystemError } from '../../core/errors.js';
import type { MediaPosition, StreamTarget } from '../medium.js';
import { DEFAULT_PART_BYTES, DEFAULT_RECORD_SIZE, MAX_LABEL_CHARS, MAX_PART_BYTES, MAX_RECORD_SIZE, TAR_BLOCK, isValidStreamId } from './tape-format.js';
import type { LogSource } from './multiplex-format.js';
import { tapeKind } from './tape-directory.js';
import { MultiplexTapeFiles, type MultiplexStream, type MultiplexTapeFile } from './multiplex-tape-files.js';
import { pausePoint } from '../../volume/crash-point.js';
import { formatSize } from '../../core/size.js';

export type { MultiplexTapeFile };

export interface MultiplexTapeOptions {
  tapes: string[];
  tapeSize?: number;
  recordSize?: number;
  partBytes?: number;
  nextTape?: (n: number) => Promise<string | null>;
  newTape?: boolean;
  label?: string;
  /** Told one line for each tape file of a killed dump removed from the tapes (tape-orphans.ts). */
  notice?: (line: string) => void;
  /** Names the multiplexed dump: its tape files' multiplex and log members. */
  id: string;
  /** The volumes, in the order given: source n is sources[n]. */
  sources: string[];
  /** Parts a source may have waiting for the tape (default 4): memory stays bounded, a faster source waits. */
  queueParts?: number;
}

export interface MultiplexOutcome {
  files: MultiplexTapeFile[];
}

interface Item {
  ch: Channel;
  kind: 'part' | 'end' | 'aborted';
  data?: Buffer;
  /** Called once the item is on tape (or the writer failed). */
  handled?: () => void;
}

/** A source's stream as the writer holds it: what the tape files know of it, and its part being filled and its queue. */
interface Channel extends MultiplexStream {
  part: Buffer;
  fill: number;
  queued: number;
  roomWaiters: Array<() => void>;
  state: 'open' | 'finishing' | 'aborted';
}

/**
 * The writer of a multiplexed dump. channel() gives each source its StreamTarget; a
 * channel's finish() resolves only when every source is settled (finished, aborted, or
 * failed before it wrote: sourceFailed) and the tape files are complete and published,
 * as a tape target's finish() does for one stream. A killed dump leaves only partial
 * tape files, which the next writer removes. When every source failed, nothing is
 * published. An error of the tape itself fails every channel.
 */
/** What an aborted stream leaves in its tape file, for its dump's one line. */
export function leftBehind(parts: number, bytes: number): string {
  return `${parts} part${parts === 1 ? '' : 's'} of its stream (${formatSize(bytes)}) stay in the tape file behind an aborted member, which readers name as given up`;
}

/** leftBehind's text in a message, to be taken back when no tape file was published after all. */
export const LEFT_BEHIND = /\d+ parts? of its stream \([^)]*\) stay in the tape file behind an aborted member, which readers name as given up/;

/**
 * Tests: the writer takes the sources' members in turn (source 0, 1, 2, 0...; a source with
 * nothing ready is waited for until it settles), so a test sees the streams interleave
 * whatever the machine's load; without it, members go out in the order they are ready.
 */
const inTurn = (): boolean => process.env.IMGSTREAM_TEST_MULTIPLEX_IN_TURN === '1';

export class MultiplexTapeWriter {
  readonly description: string;
  private readonly rs: number;
  private readonly partBytes: number;
  private readonly queueParts: number;
  private readonly files: MultiplexTapeFiles;
  private readonly channels = new Map<number, Channel>();
  private readonly sourceState: LogSource[];
  private readonly settledSources = new Set<number>();
  private readonly ready: Item[] = [];
  private wake: (() => void) | null = null;
  private failure: ImgstreamError | null = null;
  /** Streams ended on the tape so far. */
  private ended = 0;
  /** The item being written (an abort waits for its member). */
  private inHand: Item | null = null;
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
    this.description = `tape ${opts.tapes.join(',')}`;
    this.sourceState = opts.sources.map((p, i) => ({ source: i, volume: { path: p, uuid: null }, streamId: null, status: 'later', parts: 0, bytes: 0 }));
    const { tapes, tapeSize, nextTape, newTape, label, notice, id, sources } = opts;
    this.files = new MultiplexTapeFiles({ tapes, tapeSize, recordSize: rs, nextTape, newTape, label, notice, id, sources, streams: this.channels, sourceState: this.sourceState });
    this.outcome = this.pump();
    this.outcome.catch(() => {});
  }

  /** Waits while another dump writes to the tapes (before the sources start: a stop signal ends the wait, abandon()). */
  lockTapes(): Promise<void> {
    return this.files.lockTapes();
  }

  /** The dump stopped before its sources started: no tape file is written, and the tapes are let go. */
  abandon(reason: string): void {
    this.files.discard();
    for (let i = 0; i < this.opts.sources.length; i++) this.sourceFailed(i, reason);
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
      /**
       * Parts not yet on tape are dropped; those written stay, marked by an aborted member.
       * Resolves once that member is written, to what stays (its parts and bytes: the dump's
       * one line says so, not "nothing was left"). The source is settled by sourceFailed(),
       * which its dump's failure always calls next, so the log gets its error.
       */
      async abort(): Promise<string | void> {
        if (ch.state !== 'open' || self.settledSources.has(source)) return;
        ch.state = 'aborted';
        if (self.failure) return; // the writer failed: nothing is published, and it writes no more
        for (let i = self.ready.length - 1; i >= 0; i--) if (self.ready[i].ch === ch) self.ready.splice(i, 1);
        ch.queued = 0;
        for (const w of ch.roomWaiters.splice(0)) w();
        await new Promise<void>((handled) => self.enqueue({ ch, kind: 'aborted', handled }));
        if (self.failure || ch.labelledIn === 0) return; // the writer failed (nothing is published), or nothing of it was written
        return leftBehind(ch.parts, ch.bytes);
      },
    };
  }

  /** Source n's dump failed: before it opened its channel, or after (its error goes in the log). */
  sourceFailed(source: number, error: string): void {
    const s = this.sourceState[source];
    if (s.status !== 'complete') s.error = error.length > 300 ? `${error.slice(0, 297)}...` : error;
    if (s.status === 'later') s.status = 'failed'; // the writer marks one it aborts after it wrote
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

  private turn = 0;
  private readonly inTurn = inTurn();

  /** The next member of the source whose turn it is (IMGSTREAM_TEST_MULTIPLEX_IN_TURN); undefined while that source has none ready and is not settled. */
  private nextInTurn(): Item | undefined {
    const n = this.opts.sources.length;
    for (let k = 0; k < n; k++) {
      const source = (this.turn + k) % n;
      const at = this.ready.findIndex((x) => x.ch.source === source);
      if (at >= 0) {
        this.turn = (source + 1) % n;
        return this.ready.splice(at, 1)[0];
      }
      if (!this.settledSources.has(source)) return undefined;
    }
    return undefined;
  }

  /** The writer: members in the order they became ready, until every source is settled. */
  private async pump(): Promise<MultiplexOutcome> {
    // writes to the tape are synchronous and a source's next part may be ready at once (its
    // reads and compression done in the same turn): without a turn of the event loop now
    // and then, a signal (SIGINT) and the other sources' I/O would wait for the whole file
    let turned = performance.now();
    try {
      for (;;) {
        if (performance.now() - turned > 20) {
          await new Promise<void>((r) => setImmediate(r));
          turned = performance.now();
        }
        const item = this.inTurn ? this.nextInTurn() : this.ready.shift();
        if (!item) {
          if (this.allSettled()) {
            await pausePoint('multiplex-sources-read');
            break;
          }
          const t0 = performance.now();
          await new Promise<void>((r) => (this.wake = r));
          turned = performance.now();
          // the tape waits only once it has started: the time sources take to plan is not idle
          if (this.files.started) this.files.waited(performance.now() - t0);
          continue;
        }
        const ch = item.ch;
        this.inHand = item;
        if (item.kind === 'part') {
          ch.queued = Math.max(0, ch.queued - 1);
          ch.roomWaiters.shift()?.();
          await this.files.writePart(ch, item.data!);
        } else if (item.kind === 'end') {
          await this.files.closeStream(ch, 'end');
          Object.assign(this.sourceState[ch.source], { status: 'complete', parts: ch.parts, bytes: ch.bytes });
          if (this.ended++ === 0 && !this.allSettled()) await pausePoint('multiplex-first-end');
        } else {
          if (ch.labelledIn > 0) await this.files.closeStream(ch, 'aborted', this.sourceState[ch.source].error);
          Object.assign(this.sourceState[ch.source], { status: ch.labelledIn > 0 ? 'aborted' : 'failed', parts: ch.parts, bytes: ch.bytes });
        }
        this.inHand = null;
        item.handled?.();
      }
      const complete = [...this.channels.values()].filter((c) => this.sourceState[c.source].status === 'complete');
      if (complete.length === 0) {
        this.files.discard();
        const errs = this.sourceState.map((s) => `${s.volume.path}: ${s.error ?? 'failed'}`);
        throw new IoError(`multiplexed dump to ${this.description}: every source failed (${errs.join('; ')})`);
      }
      return { files: await this.files.finish() };
    } catch (err) {
      this.failure = fromSystemError(err, this.description, 'writing the multiplexed tape file');
      this.files.discard();
      // aborts waiting for their member: nothing of them stays
      for (const item of [this.inHand, ...this.ready.splice(0)]) item?.handled?.();
      for (const ch of this.channels.values()) for (const w of ch.roomWaiters.splice(0)) w();
      throw this.failure;
    }
  }

  private positionOf(ch: Channel, out: MultiplexOutcome): MediaPosition {
    const files = out.files.filter((f) => ch.sequences.includes(f.sequence));
    const first = files[0];
    return { kind: 'tape', location: first.tape, ...(first.number !== undefined ? { tapeFile: first.number } : {}), tapes: files.map((f) => f.tape), stream: ch.streamId };
  }
}
