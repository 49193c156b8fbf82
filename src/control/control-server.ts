// The server side of the control socket: a process serving a volume (serve nbd) listens
// on a Unix socket next to the volume's lock file (mode 0600: only its user may ask),
// names it in the lock file, and answers the requests of other imgstream commands (see
// format/control-protocol.ts) by running the registered ops (ops.ts) through its queue.
// Connections are sessions: their pins and close hooks end with them, however the client
// ends (a command that finished, or one killed with -9).
import fs from 'node:fs';
import net from 'node:net';
import { ImgstreamError, IoError } from '../core/errors.js';
import {
  CONTROL_PROTOCOL_VERSION,
  ControlLineSplitter,
  MAX_CONTROL_LINE_BYTES,
  decodeControlRequest,
  encodeControlMessage,
  type ControlHello,
  type ControlRequest,
  type ControlResponse,
} from '../format/control-protocol.js';
import type { Volume } from '../volume/volume.js';
import { controlOp, controlOpNames, dropTemporaries, type ControlSession, type ExportHost } from './ops.js';
import './snapshot-export.js'; // the export.snapshot op
import { PinTable } from './pins.js';

/** Where ops run: the export's queue (nbd-export.ts). */
export interface ControlQueue {
  runExclusive<T>(fn: () => T | Promise<T>): Promise<T>;
  /** Takes a CP now if anything changed; returns the generation. Called from within a task. */
  commitNow(): number;
}

class Session implements ControlSession {
  pid: number | null = null;
  ended = false;
  readonly closeHooks: Array<(vol: Volume) => void | Promise<void>> = [];
  private readonly splitter = new ControlLineSplitter(MAX_CONTROL_LINE_BYTES);

  constructor(readonly id: number, readonly socket: net.Socket, private readonly server: ControlServer) {
    socket.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = this.splitter.push(chunk);
      } catch {
        socket.destroy(); // not speaking this protocol
        return;
      }
      for (const line of lines) if (line.trim() !== '') this.server.handle(this, line);
    });
    socket.on('error', () => {});
    socket.on('close', () => this.server.end(this));
  }

  get pins(): PinTable {
    return this.server.pins;
  }

  get exports(): ExportHost | null {
    return this.server.exports;
  }

  commit(): number {
    return this.server.queue.commitNow();
  }

  onClose(fn: (vol: Volume) => void | Promise<void>): void {
    this.closeHooks.push(fn);
  }

  send(r: ControlResponse): void {
    if (!this.socket.destroyed) this.socket.write(encodeControlMessage(r));
  }
}

export class ControlServer {
  readonly pins = new PinTable();
  private readonly sessions = new Set<Session>();
  private nextSession = 1;

  private constructor(
    readonly socketPath: string,
    private readonly server: net.Server,
    private readonly vol: Volume,
    readonly queue: ControlQueue,
    private readonly report: (message: string) => void,
    readonly exports: ExportHost | null,
  ) {}

  /**
   * Listens next to the volume's lock file and advertises the socket there. Returns null
   * (after reporting why) when it cannot: the volume is then served without control, and
   * other commands get "busy" as before.
   */
  static async start(vol: Volume, queue: ControlQueue, report: (message: string) => void, exports: ExportHost | null = null): Promise<ControlServer | null> {
    const lock = vol.volumeLock;
    if (!lock) return null;
    const socketPath = lock.controlPath;
    let srv: net.Server | null = null;
    try {
      // this process holds the lock, so a socket file here was left by a holder that died
      fs.rmSync(socketPath, { force: true });
      srv = net.createServer({ allowHalfOpen: false });
      const listening = new Promise<void>((resolve, reject) => {
        srv!.once('listening', resolve);
        srv!.once('error', reject);
      });
      // the socket file is created by bind(), inside listen(): never readable by others, even briefly
      const umask = process.umask(0o177);
      try {
        srv.listen(socketPath);
      } finally {
        process.umask(umask);
      }
      await listening;
      fs.chmodSync(socketPath, 0o600);
      const control = new ControlServer(socketPath, srv, vol, queue, report, exports);
      srv.on('connection', (socket) => control.accept(socket));
      srv.on('error', (err) => report(`control socket: ${err.message}`));
      // a journaling server says so: protect tells its writes from those of writers without a journal
      lock.advertise(socketPath, vol.writable ? 'rw' : 'ro', vol.observer !== null);
      return control;
    } catch (err) {
      srv?.close();
      fs.rmSync(socketPath, { force: true });
      report(`control socket ${socketPath} not available (${(err as Error).message}): other commands cannot reach this volume while it is served`);
      return null;
    }
  }

  private accept(socket: net.Socket): void {
    this.sessions.add(new Session(this.nextSession++, socket, this));
  }

  /** One request line of a session. */
  handle(s: Session, line: string): void {
    let req: ControlRequest;
    try {
      req = decodeControlRequest(line);
    } catch {
      s.socket.destroy();
      return;
    }
    if (req.op === 'hello') {
      const pid = req.args.pid;
      s.pid = typeof pid === 'number' && Number.isSafeInteger(pid) && pid > 0 ? pid : null;
      const st = fs.fstatSync(this.vol.file.fd);
      const hello: ControlHello = { protocol: CONTROL_PROTOCOL_VERSION, pid: process.pid, volume: this.vol.path, dev: st.dev, ino: st.ino, readOnly: !this.vol.writable, blockSize: this.vol.blockSize, ops: controlOpNames() };
      s.send({ id: req.id, ok: true, result: hello });
      return;
    }
    const handler = controlOp(req.op);
    if (!handler) {
      s.send({ id: req.id, ok: false, error: { code: 'invalid-input', message: `unknown control request "${req.op}"`, hint: `the server (imgstream process ${process.pid}) is another imgstream version: stop it, or upgrade it` } });
      return;
    }
    this.queue
      .runExclusive(() => {
        // a client gone before its turn: nothing to answer, and nothing may be pinned for it
        if (s.ended) throw new IoError('control connection closed');
        return handler(this.vol, req.args, s);
      })
      .then(
        (result) => s.send({ id: req.id, ok: true, result: result === undefined ? null : result }),
        (err: unknown) => {
          if (err instanceof ImgstreamError) {
            s.send({ id: req.id, ok: false, error: { code: err.code, message: err.message, hint: err.hint, details: err.details } });
          } else {
            this.report(`internal error in control request ${req.op}: ${(err as Error)?.stack ?? String(err)}`);
            s.send({ id: req.id, ok: false, error: { code: 'internal', message: (err as Error)?.message ?? String(err) } });
          }
        },
      );
  }

  /**
   * A session ended: its pins go, then its close hooks run and the temporary snapshots it
   * left are deleted, all through the queue, so after every request it had queued.
   */
  end(s: Session): void {
    if (s.ended) return;
    s.ended = true;
    this.sessions.delete(s);
    this.queue
      .runExclusive(async () => {
        const orphans = this.pins.releaseSession(s.id);
        for (const h of s.closeHooks.splice(0)) await h(this.vol);
        if (this.vol.writable) dropTemporaries(this.vol, this.pins, orphans);
      })
      .catch((err: unknown) => this.report(`cleaning up after control connection ${s.id}: ${(err as Error)?.message ?? String(err)}`));
  }

  /**
   * Stops listening and ends every session (their cleanups are queued before this
   * returns, so the export's close() runs them), removes the socket and its mention in
   * the lock file.
   */
  close(): void {
    this.server.close();
    for (const s of [...this.sessions]) {
      s.socket.destroy();
      this.end(s);
    }
    fs.rmSync(this.socketPath, { force: true });
    try {
      // a journaling server still says so while it commits its last CP and closes the journal
      this.vol.volumeLock?.advertise(null, 'rw', this.vol.observer !== null);
    } catch {
      /* the lock is released right after anyway */
    }
  }
}
