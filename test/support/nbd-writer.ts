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

export function parseLog(text: string): LoggedOp[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as LoggedOp);
}

/** Applies one logged request to a model disk. */
export function applyOp(model: Buffer, o: LoggedOp): void {
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
export function runWriter(uri: string, args: string[]): Promise<{ code: number | null; log: LoggedOp[]; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [WRITER, uri, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, log: parseLog(out), stderr: err }));
  });
}
