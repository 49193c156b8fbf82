// One client connection: the fixed newstyle handshake, option haggling, then requests.
// Whatever arrives is parsed as soon as a whole message is there and handed to the
// export's queue (see nbd-export.ts). A request that has not fully arrived is never
// submitted: a client that disconnects in the middle of one loses only its connection.
//
// Memory is bounded: requests are parsed only while the socket's unsent output stays
// below OUTPUT_HIGH_WATER and the reads still being served ask for less than
// PENDING_READ_LIMIT bytes; beyond either the connection stops reading (the socket
// pushes back on the client) until replies go out. Input held is at most one request
// and its payload.
//
// Negotiation is bounded: the handshake must complete within `handshakeMs` (a client
// that trickles options, or declares a 4 GiB option and never sends it, is dropped when
// the time is up), an option longer than MAX_OPTION_BYTES drops the connection at once,
// and so do more than MAX_OPTIONS options.
import type { Socket } from 'node:net';
import {
  CLIENT_FLAGS_BYTES,
  CMD_DISC,
  CMD_READ,
  CMD_WRITE,
  FLAG_C_NO_ZEROES,
  FLAG_FIXED_NEWSTYLE,
  FLAG_NO_ZEROES,
  INFO_BLOCK_SIZE,
  INFO_DESCRIPTION,
  INFO_EXPORT,
  INFO_NAME,
  KNOWN_CLIENT_FLAGS,
  MAX_STRING_BYTES,
  NBD_OK,
  OPTION_HEADER_BYTES,
  OPT_ABORT,
  OPT_EXPORT_NAME,
  OPT_GO,
  OPT_INFO,
  OPT_LIST,
  OPT_LIST_META_CONTEXT,
  OPT_SET_META_CONTEXT,
  OPT_STRUCTURED_REPLY,
  REP_ACK,
  REP_META_CONTEXT,
  REP_ERR_INVALID,
  REP_ERR_UNKNOWN,
  REP_ERR_UNSUP,
  REP_INFO,
  REP_SERVER,
  REQUEST_BYTES,
  decodeClientFlags,
  decodeInfoRequest,
  decodeMetaContextRequest,
  encodeMetaContextReply,
  decodeOptionHeader,
  encodeExportNameReply,
  encodeGreeting,
  encodeInfo,
  encodeOptionReply,
  encodeServerEntry,
  NbdProtocolError,
  type OptionHeader,
} from '../format/nbd-protocol.js';
import {
  decodeRequest,
  type NbdRequest,
} from '../format/nbd-transmission.js';
import { ByteQueue } from './byte-queue.js';
import { MetaContextError, listContexts, selectContexts, type MetaContext } from './meta-context.js';
import { contextId, type ExportView, type NbdExport, type NbdSession } from './nbd-export.js';
import { MAX_PAYLOAD_BYTES } from './request-rules.js';

/**
 * Unsent reply bytes above which the connection stops reading requests... Small, so a
 * READ's data is read from the volume just before the socket takes it: the buffer is
 * still in the CPU's cache when the kernel copies it out. With 8 MiB queued the server
 * spent 10-15% more CPU per byte on nbdcopy's reads (the kernel's socket buffer keeps
 * the client fed meanwhile).
 */
const OUTPUT_HIGH_WATER = 1 << 20;
/** ...and below which it reads again (without waiting for the output to drain completely). */
const OUTPUT_LOW_WATER = 256 << 10;
/** Bytes of submitted READs not answered yet above which the connection stops reading. */
const PENDING_READ_LIMIT = 16 << 20;
/** Option data longer than this drops the connection (names and queries are at most 4 KiB each). */
export const MAX_OPTION_BYTES = 64 << 10;
/** Options one negotiation may send before it must have chosen an export. */
export const MAX_OPTIONS = 1024;
/** A refused WRITE's payload up to this is read and dropped (the session goes on); past it the connection ends. */
export const DROP_LIMIT_BYTES = 2 * MAX_PAYLOAD_BYTES;
/** Default time a client gets to complete the handshake (qemu-nbd's default too). */
export const HANDSHAKE_MS = 10_000;

type Phase = 'client-flags' | 'options' | 'transmission' | 'done';

export class NbdConnection {
  private phase: Phase = 'client-flags';
  private readonly input = new ByteQueue();
  private noZeroes = false;
  /** An option whose data has not fully arrived. */
  private option: OptionHeader | null = null;
  private optionsSeen = 0;
  /** An option is being answered asynchronously (metadata contexts): nothing else is parsed meanwhile. */
  private waiting = false;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private structured = false;
  /** Contexts selected by the last SET_META_CONTEXT, and the export name it named. */
  private contexts: MetaContext[] = [];
  private contextsFor: string | null = null;
  /** Set when the transmission phase starts. */
  private session: NbdSession | null = null;
  /** A WRITE whose payload has not fully arrived (or is being dropped). */
  private request: NbdRequest | null = null;
  /** The error the pending WRITE gets once its payload is dropped. */
  private requestError = NBD_OK;
  /** Payload or option bytes still to drop. */
  private dropping = 0;
  private blocked = false;
  /** Replies the export still owes, and the bytes the READs among them asked for. */
  private pendingReplies = 0;
  private pendingReadBytes = 0;
  /** DISC arrived: close once every pending reply has gone out. */
  private disconnecting = false;
  private pumping = false;
  private inputEnded = false;
  private closed = false;

  constructor(
    readonly socket: Socket,
    private readonly exp: NbdExport,
    private readonly onClose: (c: NbdConnection) => void,
    handshakeMs = HANDSHAKE_MS,
  ) {
    if (handshakeMs > 0) {
      this.handshakeTimer = setTimeout(() => {
        if (this.phase === 'client-flags' || this.phase === 'options') this.hardClose();
      }, handshakeMs);
      this.handshakeTimer.unref();
    }
    socket.on('data', (chunk: Buffer) => {
      if (this.phase === 'done') return; // after DISC, ABORT or shutdown nothing more is read
      this.input.push(chunk);
      this.pump();
    });
    socket.on('end', () => {
      this.inputEnded = true;
      this.pump();
    });
    socket.on('drain', () => this.unblock());
    socket.on('error', () => socket.destroy()); // ECONNRESET, EPIPE: the client is gone
    socket.on('close', () => {
      this.closed = true;
      this.stopHandshakeTimer();
      this.phase = 'done';
      this.input.clear();
      this.onClose(this);
    });
    this.send(encodeGreeting(FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES));
  }

  /** Server shutdown: stop reading; close once the replies still owed have gone out. */
  shutdown(): void {
    if (this.closed) return;
    this.phase = 'done';
    this.input.clear();
    this.socket.pause();
    this.disconnecting = true;
    if (this.pendingReplies === 0) this.socket.end();
  }

  private pump(): void {
    if (this.closed || this.pumping) return;
    this.pumping = true;
    this.socket.cork();
    this.exp.beginBatch();
    try {
      do {
        while (!this.blocked && !this.waiting && !this.tooManyPending() && this.phase !== 'done' && this.step()) {
          /* keep going while whole messages are queued */
        }
        // the changes' replies go out after one write of their journal records: room for more requests
      } while (this.exp.releaseHeld());
    } catch (err) {
      // a message that breaks the protocol (wrong magic): the session cannot go on
      if (!(err instanceof NbdProtocolError)) this.exp.reportProblem(`internal error on a connection: ${(err as Error)?.stack ?? String(err)}`);
      this.hardClose();
    } finally {
      this.exp.endBatch();
      this.socket.uncork();
      this.pumping = false;
    }
    // the client stopped sending: what is left is at most part of a message
    if (this.inputEnded && !this.blocked && !this.waiting && !this.tooManyPending() && !this.closed && this.phase !== 'done') {
      this.phase = 'done';
      this.disconnecting = true;
    }
    if (this.disconnecting && this.pendingReplies === 0 && !this.closed) this.socket.end();
  }

  private tooManyPending(): boolean {
    return this.pendingReadBytes > PENDING_READ_LIMIT;
  }

  /** Handles one message if it has fully arrived; false when more input is needed. */
  private step(): boolean {
    switch (this.phase) {
      case 'client-flags':
        return this.clientFlags();
      case 'options':
        return this.options();
      case 'transmission':
        return this.transmission();
      default:
        return false;
    }
  }

  private clientFlags(): boolean {
    if (this.input.length < CLIENT_FLAGS_BYTES) return false;
    const flags = decodeClientFlags(this.input.take(CLIENT_FLAGS_BYTES));
    if (flags & ~KNOWN_CLIENT_FLAGS) {
      this.hardClose(); // the protocol says: drop the connection on unknown client flags
      return false;
    }
    this.noZeroes = (flags & FLAG_C_NO_ZEROES) !== 0;
    this.phase = 'options';
    return true;
  }

  // ---------------------------------------------------------------- option haggling

  private options(): boolean {
    if (this.option === null) {
      if (this.input.length < OPTION_HEADER_BYTES) return false;
      this.option = decodeOptionHeader(this.input.take(OPTION_HEADER_BYTES));
      // reading (even dropping) gigabytes a client declares would keep the connection
      // busy as long as it likes: a length no valid option has ends it, as nbdkit does
      if (this.option.length > MAX_OPTION_BYTES || ++this.optionsSeen > MAX_OPTIONS) {
        this.hardClose();
        return false;
      }
      return true;
    }
    const opt = this.option;
    if (this.input.length < opt.length) return false;
    const data = this.input.take(opt.length);
    this.option = null;
    this.handleOption(opt.option, data);
    return true;
  }

  private handleOption(option: number, data: Buffer): void {
    const exp = this.exp;
    switch (option) {
      case OPT_EXPORT_NAME: {
        const name = data.toString('utf8');
        const view = exp.find(name);
        if (!view) {
          this.hardClose(); // the protocol's only answer to an unknown name here
          return;
        }
        this.send(encodeExportNameReply({ size: view.size, flags: exp.transmissionFlags(view, this.structured) }, this.noZeroes));
        this.transmit(view);
        return;
      }
      case OPT_ABORT:
        this.send(encodeOptionReply(option, REP_ACK));
        this.phase = 'done';
        this.socket.end();
        return;
      case OPT_LIST:
        if (data.length > 0) return this.optionError(option, REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
        for (const name of exp.names()) this.send(encodeOptionReply(option, REP_SERVER, encodeServerEntry(name)));
        this.send(encodeOptionReply(option, REP_ACK));
        return;
      case OPT_INFO:
      case OPT_GO: {
        const req = decodeInfoRequest(data);
        if (!req || Buffer.byteLength(req.name) > MAX_STRING_BYTES) return this.optionError(option, REP_ERR_INVALID, 'malformed export name or information list');
        const view = exp.find(req.name);
        if (!view) return this.optionError(option, REP_ERR_UNKNOWN, `no export named "${req.name}"`);
        this.send(encodeOptionReply(option, REP_INFO, encodeInfo({ type: INFO_EXPORT, size: view.size, flags: exp.transmissionFlags(view, this.structured) })));
        // sent unasked too: clients ignore what they did not ask for, and these are the defaults anyway
        this.send(encodeOptionReply(option, REP_INFO, encodeInfo({ type: INFO_BLOCK_SIZE, ...exp.blockSizes })));
        if (req.requests.includes(INFO_NAME)) this.send(encodeOptionReply(option, REP_INFO, encodeInfo({ type: INFO_NAME, name: view.name })));
        if (req.requests.includes(INFO_DESCRIPTION)) this.send(encodeOptionReply(option, REP_INFO, encodeInfo({ type: INFO_DESCRIPTION, description: view.description })));
        this.send(encodeOptionReply(option, REP_ACK));
        if (option === OPT_GO) this.transmit(view);
        return;
      }
      case OPT_STRUCTURED_REPLY:
        if (data.length > 0) return this.optionError(option, REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
        this.structured = true;
        this.send(encodeOptionReply(option, REP_ACK));
        return;
      case OPT_LIST_META_CONTEXT:
      case OPT_SET_META_CONTEXT:
        return this.metaContext(option, data);
      default:
        // STARTTLS, extended headers, anything newer
        return this.optionError(option, REP_ERR_UNSUP, `option ${option} is not supported`);
    }
  }

  /**
   * LIST_META_CONTEXT and SET_META_CONTEXT. SET evaluates storage images over the planes,
   * so it runs through the export's queue (between two requests, like a control op);
   * nothing else is parsed on this connection until it is answered.
   */
  private metaContext(option: number, data: Buffer): void {
    const set = option === OPT_SET_META_CONTEXT;
    if (set) {
      this.contexts = []; // replaced even when this fails
      this.contextsFor = null;
    }
    if (set && !this.structured) return this.optionError(option, REP_ERR_INVALID, 'NBD_OPT_SET_META_CONTEXT needs structured replies: send NBD_OPT_STRUCTURED_REPLY first');
    const req = decodeMetaContextRequest(data);
    if (!req || Buffer.byteLength(req.name) > MAX_STRING_BYTES || req.queries.some((q) => Buffer.byteLength(q) > MAX_STRING_BYTES)) {
      return this.optionError(option, REP_ERR_INVALID, 'malformed export name or query list');
    }
    const view = this.exp.find(req.name);
    if (!view) return this.optionError(option, REP_ERR_UNKNOWN, `no export named "${req.name}"`);
    this.waiting = true;
    this.exp
      .runExclusive(() => (set ? selectContexts(this.exp.volume, req.queries) : listContexts(this.exp.volume, view.snapshot, req.queries)))
      .then(
        (found) => {
          if (set) {
            this.contexts = found as MetaContext[];
            this.contextsFor = req.name;
            this.contexts.forEach((c, i) => this.send(encodeOptionReply(option, REP_META_CONTEXT, encodeMetaContextReply(contextId(i), c.name))));
          } else for (const name of found as string[]) this.send(encodeOptionReply(option, REP_META_CONTEXT, encodeMetaContextReply(0, name)));
          this.send(encodeOptionReply(option, REP_ACK));
        },
        (err) => {
          if (!(err instanceof MetaContextError)) this.exp.reportProblem(`metadata context: ${(err as Error)?.stack ?? String(err)}`);
          // the reason with its hint, as the CLI would print them (`image` says the same)
          const hint = err instanceof MetaContextError && err.hint ? ` (${err.hint})` : '';
          this.optionError(option, REP_ERR_INVALID, `${err instanceof Error ? err.message : String(err)}${hint}`);
        },
      )
      .finally(() => {
        this.waiting = false;
        this.flow();
        this.pump();
      });
    this.flow();
  }

  /** The handshake is done: requests to `view` follow. */
  private transmit(view: ExportView): void {
    this.stopHandshakeTimer();
    // contexts count only when the last SET_META_CONTEXT named the export chosen
    const contexts = this.contextsFor !== null && this.exp.find(this.contextsFor) === view ? this.contexts : [];
    this.session = { view, structured: this.structured, contexts };
    this.phase = 'transmission';
  }

  private stopHandshakeTimer(): void {
    if (this.handshakeTimer) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  private optionError(option: number, type: number, message: string): void {
    this.send(encodeOptionReply(option, type, Buffer.from(message, 'utf8')));
  }

  // ---------------------------------------------------------------- transmission

  private transmission(): boolean {
    const pending = this.request;
    if (pending !== null) {
      if (this.dropping > 0) {
        this.dropping -= this.input.skip(this.dropping);
        if (this.dropping > 0) return false;
        this.request = null;
        this.send(this.exp.refuse(this.session!, pending, this.requestError));
        return true;
      }
      if (this.input.length < pending.length) return false;
      let pooled = false;
      const payload = this.input.takeInto(pending.length, () => {
        pooled = true;
        return this.exp.payloadBuffer(pending.length);
      });
      this.request = null;
      this.submit(pending, payload, pooled);
      return true;
    }
    if (this.input.length < REQUEST_BYTES) return false;
    const r = decodeRequest(this.input.take(REQUEST_BYTES));
    if (r.type === CMD_DISC) {
      // answer everything before it, then close; there is no reply to DISC itself
      this.phase = 'done';
      this.disconnecting = true;
      return false;
    }
    // a WRITE declaring far more than the maximum advertised: reading (even dropping) up to
    // 4 GiB would keep the connection busy as long as the client likes; no client that
    // honours the block size limits sends one, so the connection ends, as nbdkit does
    if (r.type === CMD_WRITE && r.length > DROP_LIMIT_BYTES) {
      this.exp.reportProblem(`a client sent a WRITE of ${r.length} bytes, over twice the ${MAX_PAYLOAD_BYTES}-byte maximum: connection dropped`);
      this.hardClose();
      return false;
    }
    const error = this.exp.validate(this.session!, r);
    if (r.type === CMD_WRITE && r.length > 0) {
      this.request = r;
      if (error !== NBD_OK) {
        this.requestError = error;
        this.dropping = r.length;
      }
      return true;
    }
    if (error !== NBD_OK) this.send(this.exp.refuse(this.session!, r, error));
    else this.submit(r, r.type === CMD_WRITE ? Buffer.alloc(0) : null, false);
    return true;
  }

  private submit(r: NbdRequest, payload: Buffer | null, pooledPayload: boolean): void {
    const readBytes = r.type === CMD_READ ? r.length : 0;
    this.pendingReplies++;
    this.pendingReadBytes += readBytes;
    this.exp.submit(this.session!, r, payload, pooledPayload, (reply, pooled) => {
      this.pendingReplies--;
      this.pendingReadBytes -= readBytes;
      this.send(reply, pooled);
      if (this.pumping) return; // answered at once, inside pump(): it goes on by itself
      if (this.disconnecting && this.pendingReplies === 0 && !this.closed) this.socket.end();
      else if (!this.tooManyPending()) {
        this.flow();
        this.pump();
      }
    });
    if (this.tooManyPending()) this.flow();
  }

  // ---------------------------------------------------------------- output

  /** Queues bytes for the client; a READ reply's buffer goes back to the pool once sent. */
  private send(b: Buffer, pooled = false): void {
    if (this.closed) {
      if (pooled) this.exp.recycle(b);
      return;
    }
    this.socket.write(b, () => {
      if (pooled) this.exp.recycle(b);
      if (this.blocked && this.socket.writableLength < OUTPUT_LOW_WATER) this.unblock();
    });
    if (this.socket.writableLength > OUTPUT_HIGH_WATER && !this.blocked) {
      this.blocked = true;
      this.flow();
    }
  }

  private unblock(): void {
    if (!this.blocked || this.closed) return;
    this.blocked = false;
    this.flow();
    this.pump();
  }

  /** Reads from the socket only while requests may be parsed: otherwise the client waits. */
  private flow(): void {
    if (this.closed || this.phase === 'done') return;
    const stop = this.blocked || this.waiting || this.tooManyPending();
    if (stop && !this.socket.isPaused()) this.socket.pause();
    else if (!stop && this.socket.isPaused()) this.socket.resume();
  }

  private hardClose(): void {
    this.stopHandshakeTimer();
    this.phase = 'done';
    this.input.clear();
    this.socket.destroy();
  }
}
