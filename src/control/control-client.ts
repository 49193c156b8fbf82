// The client side of the control socket: one connection, requests matched to answers by
// id (format/control-protocol.ts). An error answer is raised as the error class it was
// in the server, so a command fails with the same message and exit code either way.
import net from 'node:net';
import { IoError, errorOfCode } from '../core/errors.js';
import {
  ControlLineSplitter,
  decodeControlResponse,
  encodeControlMessage,
  type ControlErrorBody,
} from '../format/control-protocol.js';

/** Answers can be long (an image's ranges); a server sending more is not one. */
const MAX_ANSWER_BYTES = 256 << 20;
const CONNECT_TIMEOUT_MS = 5000;

interface Pending {
  resolve(v: unknown): void;
  reject(e: Error): void;
}

export class ControlClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private closedWith: Error | null = null;

  private constructor(
    private readonly socket: net.Socket,
    /** Turns an error answer into the error to raise (the caller may rewrite paths in it). */
    private readonly errorFor: (e: ControlErrorBody) => Error,
    private readonly goneError: () => Error,
  ) {
    const splitter = new ControlLineSplitter(MAX_ANSWER_BYTES);
    socket.on('data', (chunk: Buffer) => {
      let lines: string[];
      try {
        lines = splitter.push(chunk);
        for (const line of lines) {
          const r = decodeControlResponse(line);
          const p = this.pending.get(r.id);
          if (!p) continue;
          this.pending.delete(r.id);
          if (r.ok) p.resolve(r.result);
          else p.reject(this.errorFor(r.error));
        }
      } catch (err) {
        this.fail(new IoError(`control socket: ${(err as Error).message}`));
        socket.destroy();
        return;
      }
      this.updateRef();
    });
    socket.on('error', () => {});
    socket.on('close', () => this.fail(this.goneError()));
    this.updateRef();
  }

  /** Connects to a server's control socket (rejects when nothing listens there). */
  static connect(socketPath: string, errorFor: (e: ControlErrorBody) => Error = defaultError, goneError: () => Error = () => new IoError('the server closed the control connection')): Promise<ControlClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(socketPath);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new IoError(`${socketPath}: no answer from the control socket`));
      }, CONNECT_TIMEOUT_MS);
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', onError);
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.off('error', onError);
        resolve(new ControlClient(socket, errorFor, goneError));
      });
    });
  }

  request<T = unknown>(op: string, args: Record<string, unknown> = {}): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.socket.write(encodeControlMessage({ id, op, args }));
      this.updateRef();
    });
  }

  /** Calls fn once the connection is closed (by either side). */
  onClose(fn: () => void): void {
    if (this.socket.destroyed) fn();
    else this.socket.once('close', fn);
  }

  close(): void {
    this.closedWith ??= new IoError('control connection closed');
    this.socket.destroy();
  }

  private fail(err: Error): void {
    this.closedWith ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  /** An idle connection does not keep the process alive. */
  private updateRef(): void {
    if (this.pending.size > 0) this.socket.ref();
    else this.socket.unref();
  }
}

function defaultError(e: ControlErrorBody): Error {
  return errorOfCode(e.code, e.message, e.hint, e.details);
}
