// What the peer tests share: token files, self-signed certificates made with openssl at
// test time, a daemon run in this process (servePeer) or as a real `imgstream serve
// peer` process started and stopped the way a user would (the ready line on stdout,
// SIGTERM), and waiting for a condition.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CLI_BIN, finished, sha256, type CliResult } from '../support/cli.js';
import { mutate, randomImage } from '../support/images.js';
import { hasTool } from '../support/external-tools.js';
import { servePeer, type PeerListening, type PeerServeResult, type ServePeerOptions } from '../../src/peer/index.js';

export const hasOpenssl = hasTool('openssl'); // recorded for the summary reporter when missing

/** A token file: 32 random bytes as hex, mode 600 unless asked otherwise. */
export function makeToken(dir: string, name = 'token', opts: { mode?: number; contents?: string } = {}): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, opts.contents ?? `${execFileSync('openssl', ['rand', '-hex', '32'], { encoding: 'utf8' }).trim()}\n`, { mode: 0o600 });
  fs.chmodSync(file, opts.mode ?? 0o600);
  return file;
}

export interface TestCert {
  cert: string;
  key: string;
  /** "sha256:hex" */
  fingerprint: string;
}

/** A self-signed P-256 certificate for `names` (DNS names and IP addresses), made by openssl. */
export function makeCert(dir: string, name: string, names = ['DNS:localhost', 'IP:127.0.0.1']): TestCert {
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  const cn = names[0].replace(/^\w+:/, '');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${names.join(',')}`, '-keyout', key, '-out', cert],
    { stdio: 'ignore' },
  );
  fs.chmodSync(key, 0o600);
  const fingerprint = `sha256:${new X509Certificate(fs.readFileSync(cert)).fingerprint256.replace(/:/g, '').toLowerCase()}`;
  return { cert, key, fingerprint };
}

export interface InProcessDaemon {
  info: PeerListening;
  /** Every log line so far. */
  logs: string[];
  stop(): Promise<PeerServeResult>;
}

/** servePeer in this process, on 127.0.0.1 and a free port. */
export async function startInProcess(opts: Omit<ServePeerOptions, 'listen' | 'log' | 'signal' | 'listening'> & { listen?: ServePeerOptions['listen'] }): Promise<InProcessDaemon> {
  const stop = new AbortController();
  const logs: string[] = [];
  let ready!: (info: PeerListening) => void;
  const listening = new Promise<PeerListening>((resolve) => (ready = resolve));
  const done = servePeer({ listen: { host: '127.0.0.1', port: 0 }, ...opts, log: (l) => logs.push(l), signal: stop.signal, listening: ready });
  const info = await Promise.race([listening, done.then(() => Promise.reject(new Error('the daemon ended before it listened')))]);
  return {
    info,
    logs,
    async stop() {
      stop.abort();
      return done;
    },
  };
}

export interface DaemonProcess {
  child: ChildProcess;
  info: PeerListening;
  /** peer://127.0.0.1:PORT/NAME */
  url(name: string): string;
  stderr(): string;
  /** SIGTERM, then the exit (which must be 0). */
  stop(): Promise<CliResult>;
  kill9(): Promise<CliResult>;
  alive(): boolean;
}

function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const e: NodeJS.ProcessEnv = { ...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true', ...extra };
  for (const k of ['NODE_ENV', 'NODE_OPTIONS', 'FORCE_COLOR', 'IMGSTREAM_DEBUG']) delete e[k];
  return e;
}

/** Starts `imgstream serve peer ...args --json` and waits for its ready line. */
export async function startDaemon(args: string[]): Promise<DaemonProcess> {
  const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', ...args, '--json'], { env: env(), stdio: ['ignore', 'pipe', 'pipe'] });
  const done = finished(child, 900_000);
  let out = '';
  let err = '';
  let exited = false;
  void done.then(() => (exited = true), () => (exited = true));
  child.stdout!.on('data', (b: Buffer) => (out += b.toString('utf8')));
  child.stderr!.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const info = await new Promise<PeerListening>((resolve, reject) => {
    const onData = () => {
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      child.stdout!.off('data', onData);
      try {
        const line = JSON.parse(out.slice(0, nl)) as { listening?: PeerListening; error?: { message: string } };
        if (line.listening) resolve(line.listening);
        else reject(new Error(`the daemon did not start: ${line.error?.message ?? out.slice(0, nl)}`));
      } catch (e) {
        reject(new Error(`not a ready line: ${out.slice(0, nl)} (${(e as Error).message})`));
      }
    };
    child.stdout!.on('data', onData);
    done.then((r) => reject(new Error(`the daemon exited ${r.code ?? r.signal} before it was ready: ${err.trim()}`)), reject);
  });
  return {
    child,
    info,
    url: (name) => `peer://127.0.0.1:${info.port}/${name}`,
    stderr: () => err,
    alive: () => !exited,
    async stop() {
      child.kill('SIGTERM');
      const r = await done;
      if (r.code !== 0) throw new Error(`the daemon exited ${r.code ?? r.signal} on SIGTERM: ${err.trim()}`);
      return r;
    },
    async kill9() {
      child.kill('SIGKILL');
      return done;
    },
  };
}

/** Polls `cond` until it holds; fails after `ms`. */
export async function waitFor(cond: () => boolean, what: string, ms = 30_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Files in `dir` (recursively, hidden ones included), relative paths, sorted. */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(path.join(dir, rel), { withFileTypes: true });
    } catch (e) {
      // a directory the daemon removes while this walks it: gone, as the next walk sees
      if ((e as NodeJS.ErrnoException).code === 'ENOENT' && rel) return;
      throw e;
    }
    for (const e of entries) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      out.push(e.isDirectory() ? `${r}/` : r);
      if (e.isDirectory()) walk(r);
    }
  };
  walk('');
  return out.sort();
}

export interface TestVolume {
  vol: string;
  /** sha256 of the logical disk at s1 and at s2. */
  s1: string;
  s2: string;
}

/**
 * A volume with two snapshots: s1 holds a pseudo-random image of `mib` MiB, s2 the same
 * with blocks changed. Made by the CLI's commands run in this process (in-process.ts;
 * env: IMGSTREAM_LOCK_DIR and the like).
 */
export async function makeVolume(dir: string, env: Record<string, string>, mib = 4, seed = 1): Promise<TestVolume> {
  // loaded here, not above: most tests sharing this file make no volume, and the commands take a while to load
  const { setupOk } = await import('../support/in-process.js');
  const vol = path.join(dir, 'v.vol');
  const bs = 4096;
  const blocks = (mib << 20) / bs;
  const a = randomImage(blocks, bs, seed, 0.2);
  const b = Buffer.from(a);
  mutate(b, bs, Math.max(8, blocks >> 4), seed + 1);
  fs.writeFileSync(path.join(dir, 'a.img'), a);
  fs.writeFileSync(path.join(dir, 'b.img'), b);
  await setupOk(['volume', 'create', vol, '--size', `${mib}M`, '-q'], { env });
  await setupOk(['volume', 'import', vol, '--from', path.join(dir, 'a.img'), '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 's1'], { env });
  await setupOk(['volume', 'import', vol, '--from', path.join(dir, 'b.img'), '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 's2'], { env });
  return { vol, s1: sha256(a), s2: sha256(b) };
}
