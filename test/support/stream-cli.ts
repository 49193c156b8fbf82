// What the stream CLI tests (test/stream/*.test.ts) share on top of cli.ts: shell
// pipelines of real imgstream processes, exports hashed by sha256, the one-line error
// rule, a small pool to run independent processes side by side, and a check that a
// failed restore touched only space its volume's last CP does not use.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'vitest';
import { CLI_BIN, cliJson, cliOk, finished, runCli, runCliAsync, type CliOptions, type CliResult } from './cli.js';
import { runBundled } from './bundled-cli.js';
import { Volume } from '../../src/volume/volume.js';
import { PLANE_ACTIVE } from '../../src/volume/layout.js';
import { checkReportOf, imageSha, snapshotNamesOf } from './oracle.js';

/** The environment the CLI runs in (as cli.ts does it: no test-mode NODE_ENV, no debug). */
export function cliEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true', ...extra };
  for (const k of ['NODE_ENV', 'NODE_OPTIONS', 'IMGSTREAM_DEBUG', 'FORCE_COLOR']) if (!(k in extra)) delete env[k];
  return env;
}

export function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

/** A shell word list running `imgstream ...args` with the built CLI. */
export function cliWords(args: string[]): string {
  return [process.execPath, CLI_BIN, ...args].map(shellQuote).join(' ');
}

/** Runs a shell script (sh -c) to completion. */
export function sh(script: string, opts: { env?: Record<string, string>; cwd?: string; timeoutMs?: number } = {}): Promise<CliResult> {
  const child = spawn('sh', ['-c', script], { cwd: opts.cwd, env: cliEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  return finished(child, opts.timeoutMs ?? 120_000);
}

/**
 * `imgstream ...from | imgstream ...to` through a real pipe; each side's exit code is
 * written by the shell so both can be checked (sh has no pipefail).
 */
export async function pipeline(from: string[], to: string[], dir: string, env?: Record<string, string>): Promise<{ left: number; right: number; stderr: string; stdout: string }> {
  const rc = path.join(dir, `.pipe-rc-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const r = await sh(`{ ${cliWords(from)}; echo $? > ${shellQuote(rc)}; } | ${cliWords(to)}`, { env });
  const left = Number(fs.readFileSync(rc, 'utf8').trim());
  fs.rmSync(rc, { force: true });
  return { left, right: r.code ?? -1, stderr: r.stderr, stdout: r.stdout };
}

/** Runs `fn` over `items` with at most `n` running at once; results in item order. */
export async function pool<T, R>(n: number, items: T[], fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, worker));
  return out;
}

/** sha256 of what `imgstream volume export SPEC --to -` writes (SPEC is VOL or VOL@SNAPSHOT), read in this process (oracle.ts). */
export function exportSha(spec: string, opts: CliOptions = {}): Promise<string> {
  return imageSha(spec, opts.env);
}

/** Export hashes of several snapshots of one volume (null: the active file system), one at a time (one process per volume). */
export async function exportShas(vol: string, names: Array<string | null>, opts: CliOptions = {}): Promise<Record<string, string>> {
  const shas = await pool(1, names, (n) => exportSha(n === null ? vol : `${vol}@${n}`, opts));
  return Object.fromEntries(names.map((n, i) => [n ?? 'active', shas[i]]));
}

/** Runs `imgstream ...args --json` without blocking (so several run at once) and parses its stdout. */
export async function cliJsonAsync<T = any>(args: string[], opts: CliOptions = {}): Promise<T> {
  const r = await runCliAsync([...args, '--json'], { timeoutMs: 120_000, ...opts });
  if (r.code !== 0) throw new Error(`imgstream ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as T;
}

export function snapshotNames(vol: string, opts: CliOptions = {}): Promise<string[]> {
  return snapshotNamesOf(vol, opts.env);
}

/** `imgstream volume check` (read in this process, oracle.ts) must report a clean volume; returns the names of the trees it walked (active and the snapshots). */
export async function expectClean(vol: string, opts: CliOptions = {}): Promise<string[]> {
  const r = await checkReportOf(vol, opts.env);
  expect([...r.problems, ...r.trees.flatMap((t) => t.problems.map((p) => `${t.name}: ${p}`))], `volume check ${vol}`).toEqual([]);
  expect(r.ok).toBe(true);
  return r.trees.map((t) => t.name);
}

/**
 * The error rule: a non-zero exit (the given one when asked), exactly one stderr line
 * "imgstream: ..." and no stack trace; `pattern` must match that line.
 */
/**
 * Runs a command that is to fail, through the executable's main() in this process
 * (bundled-cli.ts: the same code without a process's start-up cost), where it must also
 * leave no file open. What serves or runs on (serve, protect) runs as a process: if it
 * did not fail, it would go on here.
 */
export async function refused(args: string[], o: { env?: Record<string, string> }): Promise<CliResult> {
  if (args[0] === 'serve' || args[0] === 'protect') return runCli(args, o);
  const r = await runBundled(args, { env: o.env });
  expect(r.leakedFds, `imgstream ${args.join(' ')}: files left open`).toEqual([]);
  return r;
}

export function expectOneLineError(r: CliResult, what: string, exit?: number, pattern?: RegExp): string {
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  expect(r.signal, `${what}: killed by a signal`).toBeNull();
  expect(r.code, `${what}: exit code (stderr: ${r.stderr.trim()})`).not.toBe(0);
  if (exit !== undefined) expect(r.code, `${what}: exit code (stderr: ${r.stderr.trim()})`).toBe(exit);
  expect(lines, `${what}: stderr`).toHaveLength(1);
  expect(lines[0], `${what}: stderr`).toMatch(/^imgstream: \S/);
  expect(r.stderr, `${what}: stack trace on stderr`).not.toMatch(/^\s+at\s/m);
  if (pattern) expect(lines[0], `${what}: stderr`).toMatch(pattern);
  return lines[0];
}

/** Names in a directory (hidden ones included), sorted: to see leftovers. */
export function dirEntries(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}

/** Runs a dump whose level-N plan is only asked for (--dry-run --json) and returns its expression. */
export function dryRunExpression(vol: string, level: number, snapshot: string, catalog: string, opts: CliOptions = {}): string {
  return cliJson<{ expression: string; dryRun: boolean }>(['dump', vol, '--level', String(level), '--snapshot', snapshot, '--dry-run', '--catalog', catalog], opts).expression;
}

export interface DumpJson {
  streamId: string;
  level: number;
  base: string | null;
  top: string;
  expression: string;
  blocks: number;
  mapDeltaBlocks: number;
  streamBytes: number;
  sha256: string;
}

export function dump(vol: string, level: number, snapshot: string, to: string, catalog: string, extra: string[] = [], opts: CliOptions = {}): DumpJson {
  return cliJson<DumpJson>(['dump', vol, '--level', String(level), '--snapshot', snapshot, '--to', to, '--catalog', catalog, ...extra], { timeoutMs: 120_000, ...opts });
}

/**
 * What a failed restore may have changed in a volume file: only blocks its last CP does
 * not use (VBNs in no active or snapshot plane, plane blocks of free snapshot slots).
 * Returns a description of every other changed block (empty: nothing committed was
 * touched) and how many file blocks changed at all.
 */
export function changesOutsideFreeSpace(before: Buffer, volPath: string): { violations: string[]; changedBlocks: number } {
  const after = fs.readFileSync(volPath);
  const violations: string[] = [];
  if (after.length !== before.length) return { violations: [`file size ${before.length} -> ${after.length}`], changedBlocks: -1 };
  const vol = Volume.open(volPath, { write: false });
  try {
    const L = vol.layout;
    const bs = L.blockSize;
    const planes = [PLANE_ACTIVE, ...vol.snapshots().map((s) => L.snapshotPlane(s.slot))];
    const freeSlotPlanes = new Set(vol.freeSnapshotSlots().map((s) => L.snapshotPlane(s)));
    let changedBlocks = 0;
    for (let fb = 0; fb * bs < after.length; fb++) {
      const o = fb * bs;
      if (before.subarray(o, o + bs).equals(after.subarray(o, o + bs))) continue;
      changedBlocks++;
      if (fb >= L.dataStart) {
        const vbn = fb - L.dataStart;
        const c = Math.floor(vbn / L.bitsPerPlaneBlock);
        const b = vbn % L.bitsPerPlaneBlock;
        const holders = planes.filter((p) => (vol.planeWords(p, c)[b >>> 5] & (1 << (b & 31))) !== 0);
        if (holders.length) violations.push(`VBN ${vbn} (in use by plane ${holders.join(',')})`);
      } else if (fb >= L.planeStart) {
        const plane = Math.floor((fb - L.planeStart) / L.planeBlocks);
        if (!freeSlotPlanes.has(plane)) violations.push(`plane ${plane} block ${(fb - L.planeStart) % L.planeBlocks}`);
      } else violations.push(fb < L.tableStart ? `root record ${fb}` : `snapshot table block ${fb - L.tableStart}`);
    }
    return { violations, changedBlocks };
  } finally {
    vol.close();
  }
}

/** Runs `imgstream ...args` and fails unless it exits 0 (cliOk, with room for slow runs on a busy machine). */
export function ok(args: string[], opts: CliOptions = {}): CliResult {
  return cliOk(args, { timeoutMs: 120_000, ...opts });
}
