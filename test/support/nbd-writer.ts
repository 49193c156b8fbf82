// The test side of nbd-writer.py: runs it against an export, parses its log, and replays
// the log onto a model disk up to a moment.
import { spawn } from 'node:child_process';
import path from 'node:path';
import { REPO_ROOT } from './cli.js';

export const WRITER = path.join(REPO_ROOT, 'test', 'support', 'nbd-writer.py');
/** libnbd's Python module is the system's (python3-libnbd): not a pyenv shim's. */
export const PYTHON = '/usr/bin/python3';

export interface LoggedOp {
  op: 'w' | 'z' | 't' | 'f';
  off: number;
  len: number;
  seed: number;
  /** Client time before sending and after the reply (ms since the epoch). */
  t0: number;
  t1: number;
  /** The server refused it (nbd-writer.py --enospc-ok): the volume is as before it. */
  failed?: 'ENOSPC';
}

/** The bytes a write with `seed` carried (as nbd-writer.py data_of). */
export function dataOf(seed: number, n: number): Buffer {
  const words = Math.ceil(n / 16);
  const b = Buffer.alloc(words * 16);
  for (let j = 0; j < words; j++) {
    b.writeBigUInt64LE(BigInt(seed), j * 16);
    b.writeBigUInt64LE(BigInt(j), j * 16 + 8);
  }
  return b.subarray(0, n);
}

/** The acknowledged requests of a writer's output, and the one in flight when it was cut off (--announce). */
export function parseRun(text: string): { log: LoggedOp[]; inFlight: LoggedOp | null } {
  const log: LoggedOp[] = [];
  let inFlight: LoggedOp | null = null;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    let o: LoggedOp & { pending?: boolean };
    try {
      o = JSON.parse(line) as LoggedOp & { pending?: boolean };
    } catch {
      continue; // a line cut by a kill
    }
    if (o.pending) inFlight = o;
    else {
      log.push(o);
      inFlight = null;
    }
  }
  return { log, inFlight };
}

export function parseLog(text: string): LoggedOp[] {
  return parseRun(text).log;
}

/** Applies one logged request to a model disk. */
export function applyOp(model: Buffer, o: LoggedOp): void {
  if (o.failed) return;
  if (o.op === 'w') dataOf(o.seed, o.len).copy(model, o.off);
  else if (o.op === 'z' || o.op === 't') model.fill(0, o.off, o.off + o.len);
}

/** The model disk as of `boundary`: every request answered before it (t1 < boundary); null when one was in flight across it (ambiguous). */
export function modelAt(base: Buffer, log: LoggedOp[], boundary: number): Buffer | null {
  const m = Buffer.from(base);
  for (const o of log) {
    if (o.op === 'f') continue;
    if (o.t1 < boundary) applyOp(m, o);
    else if (o.t0 < boundary) return null;
  }
  return m;
}

/** Runs the writer; resolves with its log once it exits. */
export function runWriter(uri: string, args: string[]): Promise<{ code: number | null; log: LoggedOp[]; inFlight: LoggedOp | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [WRITER, uri, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, ...parseRun(out), stderr: err }));
  });
}
