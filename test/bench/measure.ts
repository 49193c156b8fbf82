// Timing: wall-clock seconds of a function or of external commands, and the statistics
// the table reports (medians of repeated short measurements).
import fs from 'node:fs';
import { spawnSync, type SpawnSyncOptions } from 'node:child_process';

export function seconds(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export async function secondsAsync<T>(fn: () => Promise<T>): Promise<{ seconds: number; value: T }> {
  const t0 = process.hrtime.bigint();
  const value = await fn();
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, value };
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Each side of a comparison `rounds` times, in the order A B C, C B A, A B C…: drift in a shared machine's disk and CPU weighs on every side alike. */
export function interleave<T>(steps: readonly T[], rounds: number): T[] {
  const out: T[] = [];
  for (let k = 0; k < rounds; k++) out.push(...(k % 2 ? [...steps].reverse() : steps));
  return out;
}

/** A command was stopped by Ctrl-C or kill: the run ends instead of going on to the next benchmark. */
export class Interrupted extends Error {}

/** Runs a command to completion; throws with its stderr when it fails. Returns its stdout. */
export function run(cmd: string, args: string[], opts: SpawnSyncOptions = {}): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: 600_000, ...opts });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.signal === 'SIGINT' || r.signal === 'SIGTERM') throw new Interrupted(`${cmd} was stopped by ${r.signal}`);
  if (r.status !== 0) {
    const err = String(r.stderr ?? '').trim().split('\n').slice(-3).join(' | ');
    throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status ?? r.signal}: ${err}`);
  }
  return String(r.stdout ?? '');
}

/** CPU seconds (user + system, every thread) process `pid` has used so far, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}
