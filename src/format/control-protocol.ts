// The control protocol of a serving imgstream process, in one file. A server (`serve
// nbd`) that holds a volume's lock answers other imgstream commands on a Unix socket
// named in the lock file (see volume/volume-lock.ts), so they can take snapshots,
// evaluate images, dump and export while it serves.
//
// Messages are JSON objects, one per line ("\n"-terminated, UTF-8), in both directions:
//   C: {"id": N, "op": "snapshot.create", "args": {...}}
//   S: {"id": N, "ok": true, "result": ...}
//   S: {"id": N, "ok": false, "error": {"code": "busy", "message": "...", "hint": "..."}}
// `id` is the client's (a non-negative integer), echoed in the answer; answers may come
// in any order. `code` is an ErrorCode of ../core/errors.ts (the client raises the same error
// class, so it exits with the same code) or "internal". The first request of a
// connection is "hello" {pid, protocol}; its answer describes the server (ControlHello).
// A line longer than MAX_CONTROL_LINE_BYTES, or one that is not such an object, ends the
// connection.
//
// Pure: no I/O. The socket side is src/control.
import { InvalidInputError } from '../core/errors.js';

export const CONTROL_PROTOCOL_VERSION = 1;

/** Longest request line a server reads. Answers (an image with --ranges) may be longer. */
export const MAX_CONTROL_LINE_BYTES = 1 << 20;

export interface ControlRequest {
  id: number;
  op: string;
  args: Record<string, unknown>;
}

export interface ControlErrorBody {
  code: string;
  message: string;
  hint?: string;
  details?: unknown;
}

export type ControlResponse = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: ControlErrorBody };

/** The answer to "hello": who serves what. */
export interface ControlHello {
  protocol: number;
  pid: number;
  /** The volume as the server opened it (its path as the server was given it). */
  volume: string;
  /** Device and inode of the volume file: a client checks it reached the server of its volume. */
  dev: number;
  ino: number;
  /** True when the server opened the volume read-only (--readonly, --snapshot): nothing changes it. */
  readOnly: boolean;
  blockSize: number;
  /** The ops this server knows. */
  ops: string[];
}

export class ControlProtocolError extends InvalidInputError {}

export function encodeControlMessage(m: ControlRequest | ControlResponse): string {
  return `${JSON.stringify(m)}\n`;
}

function parseObject(line: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    throw new ControlProtocolError('control message is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ControlProtocolError('control message is not a JSON object');
  return v as Record<string, unknown>;
}

function parseId(v: unknown): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new ControlProtocolError('control message has no valid id');
  return v;
}

export function decodeControlRequest(line: string): ControlRequest {
  const o = parseObject(line);
  const id = parseId(o.id);
  if (typeof o.op !== 'string' || o.op === '') throw new ControlProtocolError('control request has no op');
  const args = o.args ?? {};
  if (typeof args !== 'object' || args === null || Array.isArray(args)) throw new ControlProtocolError('control request args must be an object');
  return { id, op: o.op, args: args as Record<string, unknown> };
}

export function decodeControlResponse(line: string): ControlResponse {
  const o = parseObject(line);
  const id = parseId(o.id);
  if (o.ok === true) return { id, ok: true, result: o.result };
  const e = o.error as ControlErrorBody | undefined;
  if (o.ok !== false || typeof e !== 'object' || e === null || typeof e.code !== 'string' || typeof e.message !== 'string') {
    throw new ControlProtocolError('control answer is malformed');
  }
  return { id, ok: false, error: { code: e.code, message: e.message, hint: typeof e.hint === 'string' ? e.hint : undefined, details: e.details } };
}

/** Cuts a byte stream into lines; a line over `max` bytes is an error (the peer is not speaking this protocol). */
export class ControlLineSplitter {
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(private readonly max: number) {}

  /** The complete lines in `chunk` (with what came before it), without their "\n". */
  push(chunk: Buffer): string[] {
    const lines: string[] = [];
    let from = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, from);
      if (nl < 0) break;
      const part = chunk.subarray(from, nl);
      if (this.pendingBytes + part.length > this.max) throw new ControlProtocolError(`control line longer than ${this.max} bytes`);
      lines.push(this.pendingBytes ? Buffer.concat([...this.pending, part]).toString('utf8') : part.toString('utf8'));
      this.pending = [];
      this.pendingBytes = 0;
      from = nl + 1;
    }
    if (from < chunk.length) {
      const rest = chunk.subarray(from);
      this.pendingBytes += rest.length;
      if (this.pendingBytes > this.max) throw new ControlProtocolError(`control line longer than ${this.max} bytes`);
      this.pending.push(Buffer.from(rest));
    }
    return lines;
  }
}
