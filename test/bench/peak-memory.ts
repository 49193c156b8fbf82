// A timed run of the CLI that also reports the process's peak memory: GNU time's maximum
// resident set size (%M) of the node process, worker threads included (they share it).
// Starting through /usr/bin/time costs one fork and exec, nothing measurable against the
// seconds timed here. Without GNU time (Debian package `time`) the run is timed alone.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { cliCommand } from './cli.js';
import type { BenchContext } from './context.js';
import { median, run, seconds } from './measure.js';
import { row, skipped, type BenchRow } from './result.js';

export const GNU_TIME = '/usr/bin/time';
export const MIB = 2 ** 20;
/** The fixed part of the memory target: a process may use this much plus its planes. */
export const BASE_ALLOWANCE = 200 * MIB;

export interface MeasuredRun {
  seconds: number;
  stdout: string;
  /** Peak RSS in bytes, or null without GNU time. */
  peakBytes: number | null;
}

let gnuTime: boolean | null = null;

export function hasGnuTime(): boolean {
  if (gnuTime === null) {
    const r = spawnSync(GNU_TIME, ['-f', '%M', '-o', '/dev/null', 'true'], { stdio: 'ignore' });
    gnuTime = r.status === 0;
  }
  return gnuTime;
}

/** Runs `imgstream ARGS`, then `sync` of `syncPath` (both timed). */
export function measuredCli(ctx: BenchContext, args: string[], syncPath?: string): MeasuredRun {
  const [node, argv] = cliCommand(args);
  const rssFile = path.join(ctx.work, 'peak-rss.txt');
  const withTime = hasGnuTime();
  let stdout = '';
  const t = seconds(() => {
    stdout = withTime ? run(GNU_TIME, ['-f', '%M', '-o', rssFile, node, ...argv]) : run(node, argv);
    if (syncPath) run('sync', [syncPath]);
  });
  let peakBytes: number | null = null;
  if (withTime) {
    const kib = Number(fs.readFileSync(rssFile, 'utf8').trim().split('\n').pop());
    if (!Number.isFinite(kib) || kib <= 0) throw new Error(`${GNU_TIME} reported no peak RSS for imgstream ${args[0]}`);
    peakBytes = kib * 1024;
    fs.rmSync(rssFile, { force: true });
  }
  return { seconds: t, stdout, peakBytes };
}

/** Peak RSS of `imgstream --version` (node and oclif, nothing else), median of 3: the baseline of the memory rows. */
export function idleCliPeak(ctx: BenchContext): Promise<number[]> {
  return ctx.once('idle-cli-peak', async () => [0, 1, 2].map(() => measuredCli(ctx, ['--version']).peakBytes ?? 0));
}

/**
 * The memory row of a set of runs: their highest peak against the target "200 MiB plus
 * the planes" for a process that holds `planes` planes of `planeBytes` each; the
 * baseline is what node and oclif take on their own.
 */
export async function memoryRow(ctx: BenchContext, name: string, runs: string, peaks: Array<number | null>, planes: number, planeBytes: number): Promise<BenchRow> {
  const what = `peak RSS of the ${runs} (highest of ${peaks.length}) vs imgstream --version (node + oclif alone, median of 3)`;
  if (!hasGnuTime()) return skipped(name, what, 'MiB', `${GNU_TIME} (GNU time) not installed: apt-get install time`);
  const measured = peaks.map((p) => p! / MIB);
  const idle = (await idleCliPeak(ctx)).map((p) => p / MIB);
  const limit = Math.round((BASE_ALLOWANCE + planes * planeBytes) / MIB * 10) / 10;
  const target = `${limit} MiB = 200 MiB + ${planes} planes x ${(planeBytes / 1024).toFixed(0)} KiB`;
  return row(name, `${what}; target <= ${target}`, 'MiB', { measured, baseline: idle }, Math.max(...measured), median(idle), { on: 'measured', op: '<=', value: limit });
}
