// A peer connection as a sequence of messages (../format/peer-protocol.ts frames) over a
// TCP or TLS socket, the same on both sides. Sending respects the socket's backpressure
// and the rate limit and resolves once the frame is written (the caller may then reuse
// its payload); receiving holds at most a few MiB of complete messages before it stops
// reading, so a fast sender waits for a slow consumer instead of filling memory. A
// malformed frame, an oversize one or a lost connection ends the channel with a named
// error; a clean end between frames is a null message.
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { CorruptError, ImgstreamError, InvalidInputError, IoError, NetworkError } from '../core/errors.js';
import {
  CHANNEL_BINDING_BYTES,
  CHANNEL_BINDING_LABEL,
  FULL_LIMITS,
  PEER_PREAMBLE_BYTES,
  PEER_PREFIX_BYTES,
  PeerFormatError,
  decodePeerMessage,
  decodePeerPrefix,
  encodePeerFrame,
  encodePeerFrameHead,
  errorOf,
  type FrameLimits,
  type PeerErrorBody,
  type FramePrefix,
} from '../format/peer-protocol.js';
import { RateLimiter } from './rate-limit.js';
import { socketError } from './socket-error.js';
import { crc32 } from '../format/crc32.js';
import { crc32Combine } from '../format/crc32-combine.js';
import { SPARE_MIN_BYTES, SpareBuffers } from './spare-buffers.js';

export interface PeerMessage {
  msg: Record<string, unknown>;
  payload: Buffer | null;
  /** crc32 of the payload (checked with the frame), null without one. */
  payloadCrc: number | null;
  /** Asked for with setPayloadUnit(): the crc32 of each unit of the payload (absent: not whole units). */
  unitCrcs?: Uint32Array;
}

/** One connection to a peer, as either side sees it. */
export interface PeerChannel {
  /** The other side's address, for messages and logs ("192.0.2.7:50412", "[2001:db8::1]:7420"). */
  readonly peer: string;
  /** Protocol bytes written and read (preambles, frame prefixes, headers, payloads), before TLS. */
  readonly bytesSent: number;
  readonly bytesReceived: number;
  /**
   * Sends one message: a JSON object and an optional payload (at most 1 MiB of JSON and
   * 64 MiB of payload). Resolves once the frame is handed to the socket, after waiting
   * for backpressure and the rate limit; frames go out in the order send() was called.
   * Rejects with an ImgstreamError when the connection is gone. `payloadCrc`, the
   * payload's crc32 when the caller computed it anyway, saves the frame a pass over it.
   */
  send(msg: Record<string, unknown>, payload?: Buffer, payloadCrc?: number): Promise<void>;
  /**
   * Like send(), for a payload the caller hands over (it does not change it again until
   * `released` is called, once the socket took it): resolves as soon as the frame is
   * queued on the socket with less than a window of bytes (8 MiB) ahead of it, so the
   * caller prepares the next frame while this one travels. A write error fails the
   * channel (later calls reject).
   */
  sendOwned(msg: Record<string, unknown>, payload: Buffer, payloadCrc?: number, released?: () => void): Promise<void>;
  /**
   * Like sendOwned(), for a payload in several buffers sent one after another (the socket
   * gathers them: no copy into one payload). The caller does not change them until
   * `released` is called. `partCrcs[i]`, the crc32 of parts[i] when the caller has it
   * (-1: not), saves the frame a pass over that part.
   */
  sendOwnedParts(msg: Record<string, unknown>, parts: Buffer[], released?: () => void, partCrcs?: readonly number[]): Promise<void>;
  /**
   * The next message; null when the other side closed cleanly between messages. Rejects
   * with an ImgstreamError on a malformed or oversize frame, a lost connection or a
   * timeout. Messages that arrived before a failure are still delivered first.
   */
  receive(): Promise<PeerMessage | null>;
  /**
   * The caller is done with a payload receive() gave once `after` resolves: the channel
   * may read a later payload into its memory then, instead of allocating (a 1 MiB payload
   * gathered from socket chunks into a fresh buffer each time costs a full mirror
   * seconds of garbage collection).
   */
  recycle(payload: Buffer, after: Promise<void>): void;
  /** From now on a payload of whole units of `bytes` comes with each unit's crc32 (PeerMessage.unitCrcs), computed on the way. */
  setPayloadUnit(bytes: number): void;
  /** Sends what is queued, closes our side, and waits briefly (`graceMs`, default 2 s) for the other to close. Never throws. */
  close(graceMs?: number): Promise<void>;
  /** Cuts the connection now; pending and later calls reject with `err` (or "closed"). */
  destroy(err?: Error): void;
}

/** Complete messages held before the socket is paused. */
const HIGH_WATER_BYTES = 8 << 20;
const LOW_WATER_BYTES = 2 << 20;
/** ... or this many messages (a flood of tiny frames costs memory too). */
const HIGH_WATER_MESSAGES = 256;
/** Bytes sendOwned() lets wait on the socket before it waits for them to drain. */
const SEND_WINDOW_BYTES = 8 << 20;
/** How long close() waits for the other side to close after ours. */
const CLOSE_GRACE_MS = 2000;
/** How long close() waits for queued messages to be written. */
const FLUSH_GRACE_MS = 30_000;

export interface ChannelOptions {
  /** The remote address, for messages. */
  peer: string;
  /** The first bytes to arrive are a preamble, read with receivePreamble(). */
  expectPreamble: boolean;
  /** Limits on frames received (small until the other side is authenticated). */
  limits: FrameLimits;
  /** Bytes per second the sends may use (0: unlimited). */
  limitRate?: number;
  /** Rewrites every error message sent (the daemon hides its paths from clients). */
  outgoingError?: (e: PeerErrorBody) => PeerErrorBody;
}

export class FramedChannel implements PeerChannel {
  readonly peer: string;
  bytesSent = 0;
  bytesReceived = 0;
  private limits: FrameLimits;
  private readonly limiter: RateLimiter;
  private inbox: Buffer[] = [];
  private inboxBytes = 0;
  /** Page-aligned buffers that payloads spanning socket chunks are gathered into (spare-buffers.ts). */
  private readonly spares = new SpareBuffers();
  private prefix: FramePrefix | null = null;
  private preambleWanted: boolean;
  private payloadUnit = 0;
  private preamble: Buffer | null = null;
  private readonly queue: PeerMessage[] = [];
  private queueBytes = 0;
  private paused = false;
  private remoteEnded = false;
  private closing = false;
  private failure: ImgstreamError | null = null;
  private waiters: Array<() => void> = [];
  private sendChain: Promise<void> = Promise.resolve();
  private readonly failed: Promise<never>;
  private rejectFailed!: (err: ImgstreamError) => void;
  private idleMs = 0;
  private frameMs = 0;
  private frameTimer: NodeJS.Timeout | null = null;
  private readonly outgoingError: ((e: PeerErrorBody) => PeerErrorBody) | null;
  /** An error message was sent: the conversation is over, a second one would only repeat it. */
  errorSent = false;
  /** Why this side stopped the conversation (interrupt()), or null. */
  interruption: ImgstreamError | null = null;

  constructor(readonly socket: Duplex & { setTimeout?: (ms: number) => unknown }, opts: ChannelOptions) {
    this.peer = opts.peer;
    this.limits = opts.limits;
    this.preambleWanted = opts.expectPreamble;
    this.limiter = new RateLimiter(opts.limitRate ?? 0);
    this.outgoingError = opts.outgoingError ?? null;
    this.failed = new Promise<never>((_, reject) => (this.rejectFailed = reject));
    this.failed.catch(() => {}); // only raced against
    socket.on('data', (b: Buffer) => this.onData(b));
    socket.on('end', () => this.onEnd());
    socket.on('error', (err: Error) => this.fail(socketError(err, this.peer)));
    socket.on('close', () => {
      if (!this.remoteEnded) this.fail(new NetworkError(`peer ${this.peer}: connection lost`, 'the other side went away or the network failed'));
      this.wake();
    });
    socket.on('timeout', () => this.fail(new NetworkError(`peer ${this.peer}: nothing heard for ${this.idleMs / 1000} s`, 'the other side or the network stalled; try again')));
  }

  /** Fails the channel when nothing is sent or received for `ms` (0: never). */
  setIdleTimeout(ms: number): void {
    this.idleMs = ms;
    this.socket.setTimeout?.(ms);
  }

  /**
   * Fails the channel when a message has not arrived `ms` after its first byte did (0:
   * never): the idle timeout alone lets a peer trickling a byte now and then hold the
   * connection forever. Time the channel itself stops reading (a slow consumer) is not counted.
   */
  setFrameTimeout(ms: number): void {
    this.frameMs = ms;
    this.armFrameTimer();
  }

  private armFrameTimer(): void {
    const partial = !this.preambleWanted && (this.prefix !== null || this.inboxBytes > 0);
    if (this.frameMs > 0 && partial && !this.paused && !this.failure && !this.closing) {
      if (this.frameTimer === null) {
        this.frameTimer = setTimeout(() => {
          this.frameTimer = null;
          this.fail(new NetworkError(`peer ${this.peer}: a message took longer than ${this.frameMs / 1000} s to arrive`, 'the other side or the network is far too slow, or stalled'));
        }, this.frameMs);
      }
    } else if (this.frameTimer !== null) {
      clearTimeout(this.frameTimer);
      this.frameTimer = null;
    }
  }

  setPayloadUnit(bytes: number): void {
    this.payloadUnit = bytes;
  }

  /** Raises the limits on frames received (once the other side is authenticated). */
  setLimits(limits: FrameLimits): void {
    this.limits = limits;
  }

  /** TLS keying material bound into authentication, or null in plain mode. */
  tlsBinding(): Buffer | null {
    return this.socket instanceof tls.TLSSocket ? this.socket.exportKeyingMaterial(CHANNEL_BINDING_BYTES, CHANNEL_BINDING_LABEL, Buffer.alloc(0)) : null;
  }

  /** The other side's preamble: exactly its bytes. */
  async receivePreamble(): Promise<Buffer> {
    for (;;) {
      if (this.interruption) throw this.interruption;
      if (this.preamble) return this.preamble;
      if (this.failure) throw this.failure;
      if (this.remoteEnded) throw new NetworkError(`peer ${this.peer}: closed the connection before the handshake`);
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  /** The first bytes received while no preamble is complete (to tell what the other side speaks). */
  firstBytes(): Buffer {
    return Buffer.concat(this.inbox).subarray(0, 16);
  }

  /** Writes raw bytes (the preamble). */
  sendRaw(b: Buffer): Promise<void> {
    const p = this.sendChain.then(() => this.write(b, null));
    this.sendChain = p.catch(() => {});
    return p;
  }

  send(msg: Record<string, unknown>, payload?: Buffer, payloadCrc?: number): Promise<void> {
    return this.sendFrame(msg, payload ?? null, payloadCrc, false);
  }

  sendOwned(msg: Record<string, unknown>, payload: Buffer, payloadCrc?: number, released?: () => void): Promise<void> {
    return this.sendFrame(msg, payload, payloadCrc, released ?? true);
  }

  sendOwnedParts(msg: Record<string, unknown>, parts: Buffer[], released?: () => void, partCrcs?: readonly number[]): Promise<void> {
    return this.sendFrame(msg, parts, undefined, released ?? true, partCrcs);
  }

  private sendFrame(msg: Record<string, unknown>, payload: Buffer | Buffer[] | null, payloadCrc: number | undefined, owned: boolean | (() => void), partCrcs?: readonly number[]): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    if (this.closing) return Promise.reject(new NetworkError(`peer ${this.peer}: the connection is closing`));
    const e = errorOf(msg);
    if (this.interruption && payload !== null) return Promise.reject(this.interruption);
    if (e) {
      this.errorSent = true;
      // the rest of the body (a mirror's `kept`) goes as it is; message and hint are rewritten
      if (this.outgoingError) msg = { ...msg, error: { ...(msg.error as Record<string, unknown>), ...this.outgoingError(e) } };
    }
    const p = this.sendChain.then(() => {
      // interrupted while it waited its turn: the data stays here
      if (this.interruption && payload !== null) throw this.interruption;
      return this.writeFrame(msg, payload, payloadCrc, owned, partCrcs);
    });
    this.sendChain = p.catch(() => {});
    return p;
  }

  /**
   * Stops the conversation from this side (the daemon shutting down): receive() rejects
   * with `err` at once, and so do sends of a payload that have not begun, so a service
   * moving data stops at its next step. The frame being written is finished (half a frame
   * reads as damage on the other side), and messages without a payload still go out: a
   * transfer that completed meanwhile is confirmed, and the error message tells the other
   * side why this one stopped. Whoever serves the connection sends it and closes.
   */
  interrupt(err: ImgstreamError): void {
    if (this.interruption || this.failure || this.closing) return;
    this.interruption = err;
    this.wake();
  }

  async receive(): Promise<PeerMessage | null> {
    for (;;) {
      if (this.interruption) throw this.interruption;
      const m = this.queue.shift();
      if (m) {
        this.queueBytes -= (m.payload?.length ?? 0) + 64;
        if (this.paused && this.queueBytes < LOW_WATER_BYTES && this.queue.length < HIGH_WATER_MESSAGES / 2 && !this.failure) {
          this.paused = false;
          this.socket.resume();
          this.armFrameTimer();
        }
        return m;
      }
      if (this.failure) throw this.failure;
      if (this.remoteEnded) return null;
      await new Promise<void>((resolve) => this.waiters.push(resolve));
    }
  }

  async close(graceMs = CLOSE_GRACE_MS): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    this.armFrameTimer(); // what still arrives is not read
    // the last messages go out first (unless the other side stopped reading altogether)
    let flushTimer: NodeJS.Timeout | undefined;
    await Promise.race([this.sendChain, new Promise<void>((resolve) => (flushTimer = setTimeout(resolve, FLUSH_GRACE_MS)))]);
    clearTimeout(flushTimer);
    if (this.failure) return;
    // what the other side still sends is not read any more
    this.inbox = [];
    this.inboxBytes = 0;
    if (this.paused) this.socket.resume();
    const closed = new Promise<void>((resolve) => {
      if (this.socket.destroyed) resolve();
      else this.socket.once('close', () => resolve());
    });
    this.socket.end();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, graceMs)))]);
    clearTimeout(timer);
    this.destroy();
  }

  destroy(err?: Error): void {
    this.closing = true;
    const e = err instanceof ImgstreamError ? err : new NetworkError(`peer ${this.peer}: ${err ? err.message : 'connection closed'}`);
    this.fail(e);
  }

  // ---------------------------------------------------------------- receiving

  private onData(b: Buffer): void {
    this.bytesReceived += b.length;
    if (this.failure || this.closing) return;
    this.inbox.push(b);
    this.inboxBytes += b.length;
    try {
      this.parse();
    } catch (err) {
      // a bug here must cost this connection only, never the process
      if (!(err instanceof PeerFormatError)) this.fail(new IoError(`peer ${this.peer}: internal error reading a frame: ${(err as Error).message}`));
      else this.fail(new CorruptError(`peer ${this.peer}: ${err.message}`, 'the other side is not an imgstream peer of a compatible version, or the connection damages data'));
    }
  }

  private parse(): void {
    for (;;) {
      if (this.failure) return;
      if (this.preambleWanted) {
        if (this.inboxBytes < PEER_PREAMBLE_BYTES) break;
        this.preamble = this.take(PEER_PREAMBLE_BYTES);
        this.preambleWanted = false;
        this.wake();
        continue;
      }
      if (this.prefix === null) {
        if (this.inboxBytes < PEER_PREFIX_BYTES) break;
        this.prefix = decodePeerPrefix(this.take(PEER_PREFIX_BYTES), this.limits);
      }
      const p = this.prefix;
      if (this.inboxBytes < p.headerLength + p.payloadLength) break;
      const header = this.take(p.headerLength);
      const payload = p.hasPayload ? this.take(p.payloadLength) : null;
      const { msg, payloadCrc, unitCrcs } = decodePeerMessage(p, header, payload, this.payloadUnit);
      this.prefix = null;
      if (this.frameTimer !== null) {
        // the next message's deadline runs from now
        clearTimeout(this.frameTimer);
        this.frameTimer = null;
      }
      this.queue.push(unitCrcs ? { msg, payload, payloadCrc, unitCrcs } : { msg, payload, payloadCrc });
      this.queueBytes += (payload?.length ?? 0) + 64;
      this.wake();
    }
    if (!this.paused && (this.queueBytes >= HIGH_WATER_BYTES || this.queue.length >= HIGH_WATER_MESSAGES)) {
      this.paused = true;
      this.socket.pause();
    }
    this.armFrameTimer();
  }

  /** Exactly n bytes from the inbox (a view when they lie in one chunk). */
  private take(n: number): Buffer {
    if (n === 0) return Buffer.alloc(0);
    this.inboxBytes -= n;
    const first = this.inbox[0];
    if (first.length >= n) {
      if (first.length === n) this.inbox.shift();
      else this.inbox[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = n >= SPARE_MIN_BYTES ? this.spares.take(n) : Buffer.allocUnsafe(n);
    let o = 0;
    while (o < n) {
      const b = this.inbox[0];
      const k = Math.min(b.length, n - o);
      b.copy(out, o, 0, k);
      o += k;
      if (k === b.length) this.inbox.shift();
      else this.inbox[0] = b.subarray(k);
    }
    return out;
  }

  recycle(payload: Buffer, after: Promise<void>): void {
    this.spares.recycle(payload, after);
  }

  private onEnd(): void {
    this.remoteEnded = true;
    if (!this.closing && (this.prefix !== null || this.inboxBytes > 0)) {
      this.fail(new NetworkError(`peer ${this.peer}: the connection ended in the middle of a ${this.preambleWanted ? 'preamble' : 'message'}`, 'the other side went away'));
    }
    this.wake();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private fail(err: ImgstreamError): void {
    if (this.failure) return;
    this.failure = err;
    if (this.frameTimer !== null) clearTimeout(this.frameTimer);
    this.frameTimer = null;
    this.rejectFailed(err);
    this.socket.destroy();
    this.wake();
  }

  // ---------------------------------------------------------------- sending

  private async writeFrame(msg: Record<string, unknown>, payload: Buffer | Buffer[] | null, payloadCrc?: number, owned: boolean | (() => void) = false, partCrcs?: readonly number[]): Promise<void> {
    let head: Buffer;
    try {
      if (Array.isArray(payload)) {
        const parts = payload;
        const length = parts.reduce((n, p) => n + p.length, 0);
        const crc = () => parts.reduce((c, p, i) => (partCrcs !== undefined && partCrcs[i] >= 0 ? crc32Combine(c, partCrcs[i], p.length) : crc32(p, c)), 0);
        head = encodePeerFrameHead(msg, { length, crc }, FULL_LIMITS);
      } else head = encodePeerFrame(msg, payload, FULL_LIMITS, payloadCrc).head;
    } catch (err) {
      if (err instanceof PeerFormatError) throw new InvalidInputError(`peer ${this.peer}: cannot send: ${err.message}`);
      throw err;
    }
    await this.write(head, payload, owned);
  }

  private async write(head: Buffer, payload: Buffer | Buffer[] | null, owned: boolean | (() => void) = false): Promise<void> {
    if (this.failure) throw this.failure;
    const parts = payload === null ? [] : Array.isArray(payload) ? payload.filter((p) => p.length > 0) : payload.length > 0 ? [payload] : [];
    const n = head.length + parts.reduce((t, p) => t + p.length, 0);
    // a channel that fails meanwhile (the other side stopped) does not wait out the rate limit
    if (!this.limiter.unlimited) await Promise.race([this.limiter.take(n), this.failed]);
    if (this.failure) throw this.failure;
    const written = new Promise<void>((resolve, reject) => {
      const done = (err?: Error | null) => (err ? reject(this.failure ?? socketError(err, this.peer)) : resolve());
      const s = this.socket as Duplex & { cork(): void; uncork(): void };
      // corked: the head and the parts leave in one gathered write
      s.cork();
      if (parts.length === 0) s.write(head, done);
      else {
        s.write(head);
        for (let i = 0; i < parts.length; i++) s.write(parts[i], i === parts.length - 1 ? done : undefined);
      }
      s.uncork();
    });
    this.bytesSent += n;
    if (!owned) {
      await Promise.race([written, this.failed]);
      return;
    }
    written.then(typeof owned === 'function' ? owned : undefined, (err: Error) => this.fail(err instanceof ImgstreamError ? err : socketError(err, this.peer)));
    const s = this.socket as Duplex;
    if (s.writableLength > SEND_WINDOW_BYTES) await Promise.race([new Promise<void>((r) => s.once('drain', () => r())), written, this.failed]);
  }
}
