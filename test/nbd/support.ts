// What the NBD tests share: the built CLI run as a real process (dist/: `npm run build`
// first), a server started and stopped the way a user would (the ready line on stdout,
// SIGTERM), the external clients (qemu-img, qemu-io, nbdcopy), and a raw-socket client
// for what no well-behaved client sends.
import { finished } from '../support/cli.js';
import { missingTools } from '../support/external-tools.js';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

function repoRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error('repository root not found');
    dir = up;
  }
  return dir;
}

export const CLI_BIN = path.join(repoRoot(), 'dist', 'commands', '_cli', 'bin.js');

/** Client binaries the tests need that are not installed (tests skip, naming them). */
export function missingBinaries(names: string[]): string[] {
  return missingTools(names); // recorded for the summary reporter
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function env(extra: Record<string, string>): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true', ...extra };
  for (const k of ['NODE_ENV', 'NODE_OPTIONS', 'FORCE_COLOR']) delete e[k];
  return e;
}

/** Runs a program to completion without blocking the test's event loop. */
export function run(cmd: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
  const child = spawn(cmd, args, { env: env(opts.env ?? {}), stdio: ['ignore', 'pipe', 'pipe'] });
  return finished(child, opts.timeoutMs ?? 120_000);
}

/** Resolves when a spawned process has ended, with what it printed (shared with the CLI tests). */
export { finished };

/** Runs a program and fails the test unless it exits 0. */
export async function ok(cmd: string, args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code ?? r.signal}:\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** `imgstream ...args`, which must succeed. */
export function cli(args: string[], lockDir: string): Promise<RunResult> {
  return ok(process.execPath, [CLI_BIN, ...args], { env: { IMGSTREAM_LOCK_DIR: lockDir } });
}

export interface Listening {
  uri: string;
  host?: string;
  port?: number;
  socket?: string;
  readOnly: boolean;
  size: number;
  blockSize: number;
  /** With --journal (see src/nbd/server.ts). */
  journal?: { dir: string; lastSeq: number; overflowed: boolean; replayed: number; tornBytes: number };
}

export interface RunningServer {
  child: ChildProcess;
  info: Listening;
  /** SIGTERM, then the exit (which must be 0 with a summary). */
  stop(): Promise<RunResult>;
  /** SIGKILL: no last CP. */
  kill9(): Promise<RunResult>;
  /** Everything printed on stderr so far. */
  stderr(): string;
}

/** Starts `imgstream serve nbd VOL ...args --json` and waits for its ready line. */
export async function startServer(volume: string, args: string[], lockDir: string, opts: { cwd?: string; env?: Record<string, string> } = {}): Promise<RunningServer> {
  const child = spawn(process.execPath, [CLI_BIN, 'serve', 'nbd', volume, ...args, '--json'], { env: env({ IMGSTREAM_LOCK_DIR: lockDir, ...opts.env }), stdio: ['ignore', 'pipe', 'pipe'], cwd: opts.cwd });
  const done = finished(child, 600_000);
  let out = '';
  let err = '';
  child.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const info = await new Promise<Listening>((resolve, reject) => {
    const onData = () => {
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      child.stdout!.off('data', onData);
      let line: { listening?: Listening; error?: { message: string } };
      try {
        line = JSON.parse(out.slice(0, nl));
      } catch (e) {
        reject(new Error(`not a ready line: ${out.slice(0, nl)} (${(e as Error).message})`));
        return;
      }
      if (line.listening) resolve(line.listening);
      else reject(new Error(`the server did not start: ${line.error?.message ?? out.slice(0, nl)}`));
    };
    child.stdout!.on('data', onData);
    done.then((r) => reject(new Error(`the server exited ${r.code ?? r.signal} before it was ready: ${err.trim()}`)), reject);
  });
  return {
    child,
    info,
    stderr: () => err,
    async stop() {
      child.kill('SIGTERM');
      const r = await done;
      if (r.code !== 0) throw new Error(`the server exited ${r.code ?? r.signal} on SIGTERM: ${err.trim()}`);
      return r;
    },
    async kill9() {
      child.kill('SIGKILL');
      return done;
    },
  };
}

/** Runs qemu-io commands against an export; fails on any "failed" line (I/O errors, pattern mismatches). */
export async function qemuIo(uri: string, commands: string[], extra: string[] = []): Promise<string> {
  const r = await run('qemu-io', ['-f', 'raw', ...extra, uri, ...commands.flatMap((c) => ['-c', c])]);
  const text = r.stdout + r.stderr;
  if (r.code !== 0 || /failed|error/i.test(text)) throw new Error(`qemu-io ${commands.join('; ')}: exit ${r.code}\n${text}`);
  return text;
}

// ---------------------------------------------------------------- a raw-socket client

/** A socket read as exact byte counts, for speaking the protocol by hand. */
export class RawClient {
  private buf = Buffer.alloc(0);
  private waiting: (() => void) | null = null;
  ended = false;
  readonly closed: Promise<void>;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (b: Buffer) => {
      this.buf = Buffer.concat([this.buf, b]);
      this.waiting?.();
    });
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.ended = true;
        this.waiting?.();
        resolve();
      }),
    );
    socket.on('error', () => {});
  }

  static connect(info: Listening): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = info.socket ? net.connect(info.socket) : net.connect(info.port!, info.host!);
      s.once('connect', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** The next n bytes; rejects when the server closes before they arrive. */
  async read(n: number, timeoutMs = 30_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n) {
      if (this.ended) throw new Error(`connection closed after ${this.buf.length} of ${n} bytes`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${n} bytes (have ${this.buf.length})`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 100);
        this.waiting = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.waiting = null;
    }
    const out = this.buf.subarray(0, n);
    this.buf = this.buf.subarray(n);
    return Buffer.from(out);
  }

  close(): void {
    this.socket.destroy();
  }
}
