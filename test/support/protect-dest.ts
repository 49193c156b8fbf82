// What the protection destination tests share (protect-destination*.test.ts): a scratch
// root with its own lock directory and mirror state, the driver process that ships the
// model's intervals (protect-driver.ts), a peer daemon, and exports as of a time.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll } from 'vitest';
import { exportProtectedAsOf } from '../../src/journal/restore-as-of.js';
import { fileSink } from '../../src/volume/image-io.js';
import { CLI_BIN, cliJson, cliOk, finished, listeningPort, REPO_ROOT, runCli } from './cli.js';
import { tempDir } from './images.js';

export const DRIVER = path.join(REPO_ROOT, 'dist', 'test', 'support', 'protect-driver.js');
export const iso = (ms: number) => new Date(ms).toISOString();

/** A seeded generator for the times the tests pick. */
export function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a * 1_103_515_245 + 12_345) % 2 ** 31;
    return a / 2 ** 31;
  };
}

/** A scratch root for one test file (removed after it), and the helpers bound to it. */
export function protectDestFixture(prefix: string) {
  const root = tempDir(prefix);
  const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
  const at = (name: string) => path.join(root, name);
  // this process takes destination locks too (a second shipper's refusal)
  process.env.IMGSTREAM_LOCK_DIR = env.IMGSTREAM_LOCK_DIR;
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  const drive = (dest: string, seed: number, count: number, keepMs: number, snapshotEvery = 0, extraEnv: Record<string, string> = {}) =>
    spawnSync(process.execPath, [DRIVER, dest, String(seed), String(count), String(keepMs), String(snapshotEvery)], { env: { ...process.env, ...env, ...extraEnv }, encoding: 'utf8', timeout: 30_000 });

  return {
    root,
    env,
    at,
    cli: (args: string[]) => runCli(args, { env, timeoutMs: 30_000 }),
    drive,
    driveOk(dest: string, seed: number, count: number, keepMs: number, snapshotEvery = 0): void {
      const r = drive(dest, seed, count, keepMs, snapshotEvery);
      if (r.status !== 0) throw new Error(`driver exited ${r.status ?? r.signal}: ${r.stderr}`);
    },
    /** A peer daemon serving DIR (plain TCP, the test's token). */
    async startDaemon(dir: string, token: string, extra: string[] = []) {
      const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json', ...extra], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      const done = finished(child, 120_000);
      return { port: await listeningPort(child, done), child, done };
    },
    /** The raw image `volume export DEST --as-of asOf` writes. */
    exportAsOf(dest: string, asOf: string): Buffer {
      const out = at(`as-of-${process.hrtime.bigint()}.raw`);
      cliOk(['volume', 'export', dest, '--as-of', asOf, '--to', out], { env });
      const img = fs.readFileSync(out);
      fs.rmSync(out);
      return img;
    },
    /** Same, in this process (many points per kill round). */
    async exportInProcess(dest: string, asOf: string): Promise<Buffer> {
      const out = at(`in-${process.hrtime.bigint()}.raw`);
      await exportProtectedAsOf(dest, asOf, (size) => fileSink(out, { force: false, size }));
      const img = fs.readFileSync(out);
      fs.rmSync(out);
      return img;
    },
    storageBytes(dest: string): number {
      const st = cliJson(['protect', 'status', dest], { env });
      return st.base.bytes + st.intervals.bytes;
    },
  };
}
