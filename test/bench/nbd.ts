// nbd-write, nbd-read, nbd-rewrite, nbd-holes, nbd-ceiling: the NBD server against
// `nbdkit file`, the same bytes through both in the same run (issue 16).
//
// A raw image of random bytes is written with `qemu-img convert -n -O raw` into two
// exports, one after the other: `imgstream serve nbd` on a fresh volume, and nbdkit's file
// plugin on a plain file of the image's size; then each export is read back whole with
// `nbdcopy ... null:`. Both listen on Unix sockets. Targets: write and read >= 0.5 x
// nbdkit. The imgstream export is checked against the image (sha256) once.
//
// nbd-rewrite writes the same image into the imgstream export a second time (nothing
// changes: no-op rewrites) against its first write: target >= 0.8, and 0 blocks in
// `active - before`. nbd-holes copies a volume that is half holes to a local file with
// nbdcopy against the same copy from `nbdkit file` serving its raw image, zeros written out
// (target >= 1.5: holes are not transferred). nbd-ceiling, for information: the same copy
// from nbdkit serving the image with its zero runs left as holes in the file, which
// nbdkit finds with SEEK_DATA and does not transfer either: what skipping holes can gain
// at most on this machine, where nbdcopy writing the data to the file is most of the cost.
//
// Medians of ROUNDS. Wall times swing when the machine is shared: the notes give the CPU
// seconds each server spent (utime + stime, threads included), which others disturb less.
// The image is 4 GiB (--nbd-size changes it).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { sha256File } from '../support/cli.js';
import { CLI_BIN } from './cli.js';
import type { BenchContext } from './context.js';
import { cpuSeconds, median } from './measure.js';
import { row, skipped, type BenchRow } from './result.js';

export const NBD_ROWS = ['nbd-write', 'nbd-read', 'nbd-rewrite', 'nbd-holes', 'nbd-ceiling'];
const ROUNDS = 3;
let imageBytes = 4 * 2 ** 30;

/** The image size (`--nbd-size`). */
export function setNbdImageBytes(n: number): void {
  if (n < 2 * 4096 || n % (2 * 4096) !== 0) throw new Error('--nbd-size must be a multiple of 8 KiB');
  imageBytes = n;
}

interface Sample {
  write: number;
  read: number;
  writeCpu: number;
  readCpu: number;
  holes: number;
  holesCpu: number;
  /** imgstream only */
  rewrite?: number;
  rewriteBlocks?: number;
  /** nbdkit only: the half-holes copy from a sparse image */
  sparse?: number;
}

/**
 * A raw image, half of it zeros, in 64 MiB runs of data and zeros: written out, or left
 * as holes in the file (`sparse`).
 */
function makeHalfHoles(file: string, size: number, sparse = false): void {
  const run = Math.min(64 << 20, size / 2);
  const data = Buffer.alloc(run);
  randomFillSync(data);
  const zero = Buffer.alloc(run);
  const fd = fs.openSync(file, 'w');
  try {
    for (let off = 0, i = 0; off < size; off += run, i++) {
      const b = i % 2 ? zero : data;
      if (b === data) for (let k = 0; k < run; k += 4096) data.writeUInt32LE(i, k);
      if (b === data || !sparse) fs.writeSync(fd, b, 0, Math.min(run, size - off), off);
    }
    fs.ftruncateSync(fd, size);
  } finally {
    fs.closeSync(fd);
  }
}

function timed(cmd: string, args: string[]): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 16 << 20 });
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status ?? r.signal}: ${String(r.stderr).trim()}`);
  return s;
}

/** Runs fn, returning its result and the CPU seconds `pid` spent meanwhile. */
function withCpu<T>(pid: number, fn: () => T): [T, number] {
  const c0 = cpuSeconds(pid);
  const out = fn();
  return [out, cpuSeconds(pid) - c0];
}

/** A raw image of pseudo-random bytes (no zero blocks: every byte has to travel and land). */
function makeImage(file: string, size: number): void {
  const chunk = Buffer.alloc(Math.min(size, 64 << 20));
  randomFillSync(chunk);
  const fd = fs.openSync(file, 'w');
  try {
    for (let off = 0, i = 0; off < size; off += chunk.length, i++) {
      for (let b = 0; b < chunk.length; b += 4096) chunk.writeUInt32LE(i, b); // no two chunks alike
      fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - off));
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** sha256 of an export as nbdcopy streams it to stdout. */
function sha256Export(uri: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    const child = spawn('nbdcopy', [uri, '-'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stdout.on('data', (b: Buffer) => h.update(b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(h.digest('hex')) : reject(new Error(`nbdcopy exited ${code}: ${err.trim()}`))));
  });
}

function waitForFile(file: string, ms = 10_000): void {
  const deadline = Date.now() + ms;
  while (!fs.existsSync(file)) {
    if (Date.now() > deadline) throw new Error(`${file} did not appear`);
    spawnSync('sleep', ['0.05']);
  }
}

function exited(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', (code) => resolve(code))));
}

async function startImgstream(volume: string, socket: string, env: NodeJS.ProcessEnv): Promise<{ child: ChildProcess; uri: string }> {
  const child = spawn(process.execPath, [CLI_BIN, 'serve', 'nbd', volume, '--socket', socket, '--json'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b;
      if (out.includes('\n')) resolve(out.slice(0, out.indexOf('\n')));
    });
    child.once('exit', (code) => reject(new Error(`imgstream serve nbd exited ${code} before it was ready`)));
  });
  const parsed = JSON.parse(line);
  if (!parsed.listening) throw new Error(`imgstream serve nbd did not start: ${line}`);
  return { child, uri: parsed.listening.uri as string };
}

function peakRssBytes(pid: number): number {
  const m = /VmHWM:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}


function cliJson(env: NodeJS.ProcessEnv, args: string[]): unknown {
  const r = spawnSync(process.execPath, [CLI_BIN, ...args, '--json'], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`imgstream ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}


function sync(): void {
  spawnSync('sync');
}


/** nbdkit's file plugin on `file`, for the duration of fn(uri, pid). */
async function withNbdkit<T>(file: string, sock: string, readonly: boolean, fn: (uri: string, pid: number) => T): Promise<T> {
  fs.rmSync(sock, { force: true }); // nbdkit leaves its socket behind
  const kit = spawn('nbdkit', ['--foreground', ...(readonly ? ['--readonly'] : []), '--unix', sock, 'file', file], { stdio: 'inherit' });
  try {
    waitForFile(sock);
    return fn(`nbd+unix:///?socket=${sock}`, kit.pid!);
  } finally {
    kit.kill('SIGTERM');
    await exited(kit);
  }
}

/** One round on nbdkit: write, read, half-holes copy, and the same from a sparse image. */
async function nbdkitRound(at: (f: string) => string, image: string, half: string, sparse: string): Promise<Sample> {
  const target = at('nbdkit-target.raw');
  fs.rmSync(target, { force: true });
  fs.writeFileSync(target, '');
  fs.truncateSync(target, imageBytes);
  sync();
  const [[write, writeCpu], [read, readCpu]] = await withNbdkit(target, at('nbdkit.sock'), false, (uri, pid) => [
    withCpu(pid, () => timed('qemu-img', ['convert', '-n', '-O', 'raw', image, uri])),
    withCpu(pid, () => timed('nbdcopy', [uri, 'null:'])),
  ]);
  fs.rmSync(target, { force: true });
  const out = at('copy.raw');
  const copy = (uri: string, pid: number) => {
    fs.rmSync(out, { force: true });
    sync();
    return withCpu(pid, () => timed('nbdcopy', [uri, out]));
  };
  const [holes, holesCpu] = await withNbdkit(half, at('nbdkit-half.sock'), true, copy);
  const [sparseSeconds] = await withNbdkit(sparse, at('nbdkit-sparse.sock'), true, copy);
  fs.rmSync(out, { force: true });
  return { write, read, writeCpu, readCpu, holes, holesCpu, sparse: sparseSeconds };
}

/** One round on imgstream: write, read, rewrite, half-holes copy. */
async function imgstreamRound(at: (f: string) => string, env: NodeJS.ProcessEnv, image: string, half: string, check: string | null): Promise<{ sample: Sample; rss: number }> {
  const vol = at('bench.vol');
  fs.rmSync(vol, { force: true });
  cliJson(env, ['volume', 'create', vol, '--size', String(imageBytes)]);
  sync();
  const server = await startImgstream(vol, at('imgstream.sock'), env);
  let s: Omit<Sample, 'holes' | 'holesCpu'>;
  let rss = 0;
  try {
    const [write, writeCpu] = withCpu(server.child.pid!, () => timed('qemu-img', ['convert', '-n', '-O', 'raw', image, server.uri]));
    const [read, readCpu] = withCpu(server.child.pid!, () => timed('nbdcopy', [server.uri, 'null:']));
    if (check !== null) {
      const got = await sha256Export(server.uri);
      if (got !== check) throw new Error(`the export does not hold the image (sha256 ${got}, expected ${check})`);
    }
    // the same image again: every block equals what it holds
    cliJson(env, ['snapshot', 'create', vol, 'before']);
    const rewrite = timed('qemu-img', ['convert', '-n', '-O', 'raw', image, server.uri]);
    const rewriteBlocks = (cliJson(env, ['image', vol, 'active - before']) as { blocks: number }).blocks;
    s = { write, read, writeCpu, readCpu, rewrite, rewriteBlocks };
    rss = peakRssBytes(server.child.pid!);
  } finally {
    server.child.kill('SIGTERM');
    const code = await exited(server.child);
    if (code !== 0) throw new Error(`imgstream serve nbd exited ${code} on SIGTERM`);
  }
  fs.rmSync(vol, { force: true });
  const hvol = at('half.vol');
  fs.rmSync(hvol, { force: true });
  cliJson(env, ['volume', 'create', hvol, '--size', String(imageBytes)]);
  cliJson(env, ['volume', 'import', hvol, '--from', half]);
  const out = at('copy.raw');
  const hserver = await startImgstream(hvol, at('half.sock'), env);
  let holes: [number, number];
  try {
    fs.rmSync(out, { force: true });
    sync();
    holes = withCpu(hserver.child.pid!, () => timed('nbdcopy', [hserver.uri, out]));
  } finally {
    hserver.child.kill('SIGTERM');
    await exited(hserver.child);
  }
  fs.rmSync(out, { force: true });
  fs.rmSync(hvol, { force: true });
  return { sample: { ...s, holes: holes[0], holesCpu: holes[1] }, rss };
}

export async function benchNbd(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const missing = ['qemu-img', 'nbdcopy', 'nbdkit'].filter((b) => spawnSync('sh', ['-c', `command -v ${b}`]).status !== 0);
  if (missing.length) {
    const why = `${missing.join(', ')} not installed (apt-get install qemu-utils libnbd-bin nbdkit)`;
    for (const n of NBD_ROWS) record(skipped(n, 'the NBD server against nbdkit file', 'MB/s', why));
    return;
  }
  const dir = path.join(ctx.work, 'nbd');
  fs.mkdirSync(dir, { recursive: true });
  const at = (f: string) => path.join(dir, f);
  const env: NodeJS.ProcessEnv = { ...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true', IMGSTREAM_LOCK_DIR: at('locks') };
  const gib = `${(imageBytes / 2 ** 30).toFixed(imageBytes % 2 ** 30 ? 2 : 0)} GiB`;
  try {
    ctx.log(`nbd: writing a ${gib} image, one of random bytes and one half zeros (written out and as holes)`);
    const image = at('image.raw');
    makeImage(image, imageBytes);
    const hash = sha256File(image); // also puts the image in the page cache for both sides
    const half = at('half.raw');
    makeHalfHoles(half, imageBytes);
    const sparse = at('half-sparse.raw');
    makeHalfHoles(sparse, imageBytes, true);
    const ours: Sample[] = [];
    const theirs: Sample[] = [];
    let rss = 0;
    for (let round = 0; round < ROUNDS; round++) {
      theirs.push(await nbdkitRound(at, image, half, sparse));
      const got = await imgstreamRound(at, env, image, half, round === 0 ? hash : null);
      ours.push(got.sample);
      rss = Math.max(rss, got.rss);
      const [o, t] = [ours[round], theirs[round]];
      ctx.log(`nbd: round ${round + 1}/${ROUNDS}: write ${o.write.toFixed(2)} s vs ${t.write.toFixed(2)} s, read ${o.read.toFixed(2)} s vs ${t.read.toFixed(2)} s, rewrite ${o.rewrite!.toFixed(2)} s (${o.rewriteBlocks} blocks moved), half-holes copy ${o.holes.toFixed(2)} s vs ${t.holes.toFixed(2)} s (sparse image ${t.sparse!.toFixed(2)} s)`);
    }
    const mbps = (xs: number[]) => xs.map((s) => imageBytes / s / 1e6);
    const rowOf = (name: string, what: string, m: number[], b: number[], value: number | null) => {
      const [ms, bs] = [mbps(m), mbps(b)];
      return row(name, what, 'MB/s', { measured: ms, baseline: bs }, median(ms), median(bs), value === null ? null : { on: 'ratio', op: '>=', value });
    };
    const pick = (xs: Sample[], k: keyof Sample) => xs.map((s) => s[k] as number);
    record(rowOf('nbd-write', `qemu-img convert -n of a ${gib} image into the export vs nbdkit file`, pick(ours, 'write'), pick(theirs, 'write'), 0.5));
    record(rowOf('nbd-read', 'nbdcopy of the export to null: vs nbdkit file', pick(ours, 'read'), pick(theirs, 'read'), 0.5));
    const moved = Math.max(...pick(ours, 'rewriteBlocks'));
    const rewrite = rowOf('nbd-rewrite', `the same image again (${moved} blocks moved; target 0) vs its first write`, pick(ours, 'rewrite'), pick(ours, 'write'), 0.8);
    record(moved === 0 ? rewrite : { ...rewrite, verdict: 'MISS' });
    record(rowOf('nbd-holes', 'nbdcopy of a half-holes volume to a file vs nbdkit file of its raw image', pick(ours, 'holes'), pick(theirs, 'holes'), 1.5));
    record(rowOf('nbd-ceiling', 'the same copy from nbdkit file of a sparse image (holes not sent) vs of the raw image', pick(theirs, 'sparse'), pick(theirs, 'holes'), null));
    const cpu = (['write', 'read', 'holes'] as const).map((w) => {
      const k = `${w}Cpu` as const;
      return `${w} ${median(pick(ours, k)).toFixed(2)} s vs ${median(pick(theirs, k)).toFixed(2)} s`;
    });
    ctx.note(`nbd: server CPU per copy (median), imgstream vs nbdkit: ${cpu.join(', ')}; imgstream server peak memory ${(rss / 2 ** 20).toFixed(0)} MiB`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
