// Running the built imgstream CLI as a real process (dist/commands/_cli/bin.js: run
// `npm run build` first), plus what CLI tests compare: sha256 of files and of whole
// directory trees, raw image files, allocated disk space. Image contents come from
// images.ts so every test speaks of the same deterministic images.
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomImage } from './images.js';

/** The repository root: the nearest directory above this file holding package.json (works from test/ and dist/test/). */
function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error('imgstream repository root not found');
    dir = up;
  }
}

export const REPO_ROOT = repoRoot();
export const CLI_BIN = path.join(REPO_ROOT, 'dist', 'commands', '_cli', 'bin.js');

export interface CliResult {
  /** Exit code; null when the process ended by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** stdout as bytes (exports to `--to -`). */
  stdoutBytes: Buffer;
}

export interface CliOptions {
  /** Bytes fed to stdin (default: an empty stdin, never a terminal). */
  input?: Buffer | string;
  /** A file to give as stdin instead (a redirect: `imgstream ... < FILE`). */
  stdinFile?: string;
  cwd?: string;
  /** Added to the environment. */
  env?: Record<string, string>;
  timeoutMs?: number;
}

function cliEnv(extra?: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true', ...extra };
  // run as a user would: vitest sets NODE_ENV=test, which puts oclif in development mode
  // (slower start, extra warnings on stderr); stack traces only when asked for
  for (const k of ['NODE_ENV', 'NODE_OPTIONS', 'IMGSTREAM_DEBUG', 'FORCE_COLOR']) if (!extra || !(k in extra)) delete env[k];
  return env;
}

function assertBuilt(): void {
  if (!fs.existsSync(CLI_BIN)) throw new Error(`${CLI_BIN} is missing: run npm run build first`);
}

/** Runs `imgstream ...args` to completion. */
export function runCli(args: string[], opts: CliOptions = {}): CliResult {
  assertBuilt();
  const stdinFd = opts.stdinFile === undefined ? null : fs.openSync(opts.stdinFile, 'r');
  let r: SpawnSyncReturns<Buffer>;
  try {
    r = spawnSync(process.execPath, [CLI_BIN, ...args], {
      cwd: opts.cwd,
      env: cliEnv(opts.env),
      ...(stdinFd === null ? { input: opts.input ?? '' } : { stdio: [stdinFd, 'pipe', 'pipe'] }),
      timeout: opts.timeoutMs ?? 60_000,
      killSignal: 'SIGKILL',
      maxBuffer: 1 << 30,
    });
  } finally {
    if (stdinFd !== null) fs.closeSync(stdinFd);
  }
  if (r.error && (r.error as NodeJS.ErrnoException).code !== 'ETIMEDOUT') throw r.error;
  if (r.error) throw new Error(`imgstream ${args.join(' ')}: timed out after ${opts.timeoutMs ?? 60_000} ms`);
  const stdoutBytes = r.stdout ?? Buffer.alloc(0);
  return { code: r.status, signal: r.signal, stdout: stdoutBytes.toString('utf8'), stderr: (r.stderr ?? Buffer.alloc(0)).toString('utf8'), stdoutBytes };
}

/** Runs `imgstream ...args` and fails unless it exits 0; returns the result. */
export function cliOk(args: string[], opts: CliOptions = {}): CliResult {
  const r = runCli(args, opts);
  if (r.code !== 0) throw new Error(`imgstream ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return r;
}

/** Runs `imgstream ...args --json` successfully and parses its stdout. */
export function cliJson<T = any>(args: string[], opts: CliOptions = {}): T {
  return JSON.parse(cliOk([...args, '--json'], opts).stdout) as T;
}

/** Starts `imgstream ...args` without waiting (to kill it, or to feed its stdin yourself with stdin: 'pipe'). */
export function spawnCli(args: string[], opts: Omit<CliOptions, 'input' | 'timeoutMs'> & { stdin?: 'ignore' | 'pipe' } = {}): ChildProcess {
  assertBuilt();
  const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd: opts.cwd, env: cliEnv(opts.env), stdio: [opts.stdin ?? 'ignore', 'pipe', 'pipe'] });
  child.stdin?.on('error', () => {}); // the CLI may exit (or be killed) before reading all of its input
  return child;
}

/** Runs `imgstream ...args` to completion without blocking (to run several at once). */
export function runCliAsync(args: string[], opts: CliOptions = {}): Promise<CliResult> {
  assertBuilt();
  const child = spawn(process.execPath, [CLI_BIN, ...args], { cwd: opts.cwd, env: cliEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
  const done = finished(child, opts.timeoutMs ?? 60_000);
  child.stdin?.on('error', () => {}); // the CLI may exit before reading all of its input
  child.stdin?.end(opts.input ?? '');
  return done;
}

/** Resolves when a spawned process has ended, with what it printed. */
export function finished(child: ChildProcess, timeoutMs = 60_000): Promise<CliResult> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout?.on('data', (b: Buffer) => out.push(b));
  child.stderr?.on('data', (b: Buffer) => err.push(b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`process ${child.pid} did not end within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const stdoutBytes = Buffer.concat(out);
      resolve({ code, signal, stdout: stdoutBytes.toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), stdoutBytes });
    });
  });
}

// ---------------------------------------------------------------- hashes

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** sha256 of a file, read in pieces (volume files can be large). */
export function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(8 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/**
 * Every entry under `dir` (recursively): directories and symlinks by kind, files by what
 * `file(fullPath)` says of them.
 */
function describeTree(dir: string, file: (full: string) => string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    for (const ent of fs.readdirSync(path.join(dir, rel), { withFileTypes: true })) {
      const r = path.join(rel, ent.name);
      const full = path.join(dir, r);
      if (ent.isDirectory()) {
        out[`${r}/`] = 'dir';
        walk(r);
      } else if (ent.isFile()) out[r] = file(full);
      else out[r] = ent.isSymbolicLink() ? `symlink:${fs.readlinkSync(full)}` : 'other';
    }
  };
  walk('');
  return out;
}

/**
 * Every entry under `dir` (recursively) with what it holds: files by sha256 and size,
 * directories and symlinks by kind. Comparing two snapshots of this map shows any file
 * created, removed or changed, including temporary files left behind.
 */
export function hashTree(dir: string): Record<string, string> {
  return describeTree(dir, (full) => `${fs.statSync(full).size}:${sha256File(full)}`);
}

/**
 * What changes when anything in a directory tree is touched, without reading the files:
 * per path its kind and, for files, inode, size, and modification and change times in
 * nanoseconds. Any write to a file moves its mtime, and any change of a file's metadata
 * (times set back, mode, links) moves its ctime, which no process can set: so this notices
 * a write even of the bytes that were there (which hashTree() would not), at the cost of a
 * stat per path instead of reading every byte (tests that compare many times, such as the
 * bad-input cases, around every one of ~130 CLI runs).
 */
export function fingerprintTree(dir: string): Record<string, string> {
  return describeTree(dir, (full) => {
    const st = fs.statSync(full, { bigint: true });
    return `${st.ino}:${st.size}:${st.mtimeNs}:${st.ctimeNs}`;
  });
}

// ---------------------------------------------------------------- images and files

/**
 * Writes a deterministic raw image of `blocks` blocks of `bs` bytes (randomImage: about
 * `zeroFraction` of the blocks all-zero, the rest pseudo-random) and returns its bytes.
 */
export function writeImage(file: string, blocks: number, bs: number, seed: number, zeroFraction = 0.3): Buffer {
  const img = randomImage(blocks, bs, seed, zeroFraction);
  fs.writeFileSync(file, img);
  return img;
}

/** Number of `bs`-byte blocks of `img` that are not all zero. */
export function nonZeroBlocks(img: Buffer, bs: number): number {
  let n = 0;
  const zero = Buffer.alloc(bs);
  for (let o = 0; o < img.length; o += bs) if (!img.subarray(o, o + bs).equals(zero.subarray(0, Math.min(bs, img.length - o)))) n++;
  return n;
}

/** Disk space a file really takes (sparse files take less than their size). */
export function allocatedBytes(file: string): number {
  return fs.statSync(file).blocks * 512;
}

/** The lines of a process's stderr (without the final empty one). */
export function stderrLines(r: CliResult): string[] {
  return r.stderr.split('\n').filter((l, i, all) => !(l === '' && i === all.length - 1));
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The port a `serve peer --json` child listens on: the first JSON line of its stdout ({ listening: { port } }). */
export function listeningPort(child: ChildProcess, done: Promise<CliResult>): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (b: Buffer) => {
      out += b.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) resolve((JSON.parse(out.slice(0, nl)) as { listening: { port: number } }).listening.port);
    });
    done.then((r) => reject(new Error(`serve peer exited ${r.code}: ${r.stderr}`)), reject);
  });
}
