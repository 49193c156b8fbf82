// What the concurrent model test (test/volume/concurrent.model.test.ts) needs besides the
// model itself: a writer (nbd-writer.py) run for one step and stopped between two
// requests, the disk states a point in time allows, the CLI run as a process that can be
// killed, and reading a volume nobody serves.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { Volume } from '../../src/volume/volume.js';
import { exportImage } from '../../src/volume/export.js';
import { finished, spawnCli, type CliResult } from './cli.js';
import { exportToBuffer } from './images.js';
import { applyOp, dataOf, parseRun, PYTHON, WRITER, type LoggedOp } from './nbd-writer.js';

/** nbd-writer.py writing until `stop()`, which ends it between two requests (after a flush). */
export function startStepWriter(uri: string, stopFile: string, seed: number): { stop(): Promise<{ log: LoggedOp[]; code: number | null; stderr: string }> } {
  fs.rmSync(stopFile, { force: true });
  const child = spawn(PYTHON, [WRITER, uri, '--seconds', '120', '--seed', String(seed), '--pause-ms', '1', '--flush-every', '40', '--stop-file', stopFile, '--enospc-ok'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const done = finished(child, 180_000);
  return {
    async stop() {
      fs.writeFileSync(stopFile, '');
      const r = await done;
      return { log: parseRun(r.stdout).log, code: r.code, stderr: r.stderr };
    },
  };
}

/**
 * The disk states allowed at a moment known to lie in [from, to] (ms since the epoch),
 * for one writer that has one request in flight at a time (and a server that applies a
 * connection's requests in order): the state after every request answered before `from`,
 * then after each of the following ones sent by `to`. Yields them in order.
 */
export function* statesBetween(base: Buffer, log: LoggedOp[], from: number, to: number): Generator<{ state: Buffer; applied: number }> {
  const m = Buffer.from(base);
  let k = 0;
  for (; k < log.length && log[k].t1 < from; k++) applyOp(m, log[k]);
  yield { state: m, applied: k };
  for (; k < log.length && log[k].t0 <= to; k++) {
    if (log[k].op === 'f') continue;
    applyOp(m, log[k]);
    yield { state: m, applied: k + 1 };
  }
}

/** Null when `content` is one of the states allowed in [from, to]; else what differs from the nearest. */
export function notAllowedState(content: Buffer, base: Buffer, log: LoggedOp[], from: number, to: number, bs: number): string | null {
  let best = { diff: Infinity, applied: -1, blocks: [] as number[] };
  let range = [Infinity, -1];
  for (const { state, applied } of statesBetween(base, log, from, to)) {
    range = [Math.min(range[0], applied), applied];
    if (state.equals(content)) return null;
    const blocks: number[] = [];
    for (let b = 0; b * bs < state.length; b++) if (!state.subarray(b * bs, (b + 1) * bs).equals(content.subarray(b * bs, (b + 1) * bs))) blocks.push(b);
    if (blocks.length < best.diff) best = { diff: blocks.length, applied, blocks };
  }
  // for a few blocks that differ: the requests that touched them, and after which one the block read as found
  const story = best.blocks.slice(0, 3).map((b) => {
    const touching = log.map((o, k) => ({ o, k })).filter(({ o }) => o.op !== 'f' && o.off < (b + 1) * bs && o.off + o.len > b * bs);
    const m = Buffer.from(base);
    const matches: number[] = [];
    if (m.subarray(b * bs, (b + 1) * bs).equals(content.subarray(b * bs, (b + 1) * bs))) matches.push(0);
    for (let k = 0; k < log.length; k++) {
      applyOp(m, log[k]);
      if (touching.some((t) => t.k === k) && m.subarray(b * bs, (b + 1) * bs).equals(content.subarray(b * bs, (b + 1) * bs))) matches.push(k + 1);
    }
    const near = touching.filter(({ k }) => k >= range[0] - 40 && k <= range[1] + 40).map(({ o, k }) => `#${k} ${o.op}${o.failed ? '(failed)' : ''} ${o.off}+${o.len} ${(o.t0 - from).toFixed(1)}..${(o.t1 - from).toFixed(1)}`);
    // a refused request whose data the block holds after all
    const refused = touching.filter(({ o }) => o.failed && o.op === 'w').filter(({ o }) => {
      const d = dataOf(o.seed, o.len);
      const lo = Math.max(o.off, b * bs);
      const hi = Math.min(o.off + o.len, (b + 1) * bs);
      return d.subarray(lo - o.off, hi - o.off).equals(content.subarray(lo, hi));
    });
    const last = touching.slice(-3).map(({ o, k }) => `#${k} ${o.op}${o.failed ? '(failed)' : ''} ${o.off}+${o.len} ${(o.t0 - from).toFixed(1)}..${(o.t1 - from).toFixed(1)}`);
    return `block ${b}: reads as after requests [${matches.slice(-4).join(', ')}]; refused writes it holds: [${refused.map(({ k }) => k).join(', ')}]; zero: ${content.subarray(b * bs, (b + 1) * bs).every((x) => x === 0)}; requests near (ms from the moment): ${near.join('; ')}; last: ${last.join('; ')}`;
  });
  return `equals no state after ${range[0]}..${range[1]} of ${log.length} requests; nearest (after ${best.applied}) differs in blocks ${best.blocks.slice(0, 12).join(', ')}${best.blocks.length > 12 ? ` (${best.blocks.length} in all)` : ''}\n${story.join('\n')}`;
}

/** `imgstream ...args` as a process (to run several at once, or to kill one). */
export function startCli(args: string[], env: Record<string, string>): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawnCli(args, { env });
  return { child, done: finished(child, 120_000) };
}

/** A volume nobody holds, exported whole (the active disk, or a snapshot). */
export async function readVolume(file: string, snapshot?: string): Promise<Buffer> {
  const vol = Volume.open(file, { write: false });
  try {
    return await exportToBuffer((sink) => exportImage(vol, snapshot, sink));
  } finally {
    vol.close();
  }
}

/** What a failed command printed, for assertion messages. */
export function said(r: CliResult): string {
  return `exit ${r.code ?? r.signal}: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`;
}
