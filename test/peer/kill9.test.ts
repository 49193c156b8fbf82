// kill -9 in the middle of a dump to a peer, of the daemon and of the sender, and a
// SIGTERM to the daemon. The dump
// runs with --limit-rate so the transfer lasts seconds, and is killed once the daemon's
// temporary file holds a given share of the stream. Afterwards no file has the stream's
// name, the catalog does not record it, and the same dump run again succeeds and
// restores like the source. A killed sender costs the daemon nothing: it removes the
// temporary file itself and keeps serving; a killed daemon's temporary file is removed
// by the next transfer to the same name.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, finished, runCliAsync, type CliResult } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { cliEnv, exportSha, expectOneLineError } from '../support/stream-cli.js';
import { hasOpenssl, listTree, makeCert, makeToken, makeVolume, startDaemon, waitFor, type DaemonProcess, type TestCert, type TestVolume } from './support.js';

const root = tempDir('imgstream-peer-kill-');
const work = path.join(root, 'work');
const store = path.join(root, 'store');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const RATE = '1M';
let token: string;
let cert: TestCert;
let v: TestVolume;
let streamSize: number;
let flags: string[];

beforeAll(async () => {
  fs.mkdirSync(work, { recursive: true });
  fs.mkdirSync(store);
  if (!hasOpenssl) return;
  token = makeToken(root, 'token');
  cert = makeCert(root, 'daemon');
  flags = ['--token-file', token, '--tls-fingerprint', cert.fingerprint];
  v = await makeVolume(work, env, 8);
  // the size the streams will have (the same dump to a file)
  const r = await runCliAsync(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--compress', 'none', '--to', path.join(work, 'local.l0'), '--catalog', path.join(work, 'local-catalog.json'), '-q'], { env, timeoutMs: 120_000 });
  expect(r.code, r.stderr).toBe(0);
  streamSize = fs.statSync(path.join(work, 'local.l0')).size;
  expect(streamSize).toBeGreaterThan(6 << 20);
});

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const startServe = () => startDaemon(['--root', store, '--listen', '127.0.0.1:0', '--token-file', token, '--tls-cert', cert.cert, '--tls-key', cert.key]);

/** Starts a rate-limited dump of s1 to NAME on the daemon. */
function slowDump(d: DaemonProcess, name: string, catalog: string) {
  const child = spawn(process.execPath, [CLI_BIN, 'dump', v.vol, '--level', '0', '--snapshot', 's1', '--compress', 'none', '--to', d.url(name), ...flags, '--limit-rate', RATE, '--catalog', catalog, '-q'], {
    env: cliEnv(env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { child, done: finished(child, 120_000) };
}

/** The daemon's temporary file for NAME (in the store root), or null. */
function partialOf(d: DaemonProcess, name: string): string | null {
  const f = path.join(store, `.${name}.partial-${d.child.pid}`);
  return fs.existsSync(f) ? f : null;
}

const catalogIds = (catalog: string): string[] => (fs.existsSync(catalog) ? (JSON.parse(fs.readFileSync(catalog, 'utf8')) as { dumps: Array<{ id: string }> }).dumps.map((x) => x.id) : []);

async function dumpOk(d: DaemonProcess, name: string, catalog: string): Promise<CliResult> {
  const r = await runCliAsync(['dump', v.vol, '--level', '0', '--snapshot', 's1', '--compress', 'none', '--to', d.url(name), ...flags, '--catalog', catalog, '-q'], { env, timeoutMs: 120_000 });
  expect(r.code, r.stderr).toBe(0);
  return r;
}

async function restoresLikeTheSource(d: DaemonProcess, name: string, vol: string): Promise<void> {
  const r = await runCliAsync(['restore', '--from', d.url(name), '--to', path.join(work, vol), ...flags, '-q'], { env, timeoutMs: 120_000 });
  expect(r.code, r.stderr).toBe(0);
  expect(await exportSha(`${path.join(work, vol)}@s1`, { env })).toBe(v.s1);
}

describe.skipIf(!hasOpenssl)('kill -9 during a dump to a peer', () => {
  it('of the daemon: the dump fails in one line, nothing has the name, a restarted daemon takes the retry', async () => {
    const d = await startServe();
    const catalog = path.join(work, 'daemon-kill.json');
    const dump = slowDump(d, 'dk.l0', catalog);
    await waitFor(() => {
      const p = partialOf(d, 'dk.l0');
      return p !== null && fs.statSync(p).size >= streamSize / 2;
    }, 'half the stream at the daemon', 60_000);
    await d.kill9();
    const r = await dump.done;
    expectOneLineError(r, 'dump to a killed daemon', 12, /peer 127\.0\.0\.1:\d+: /);
    expect(fs.existsSync(path.join(store, 'dk.l0'))).toBe(false);
    expect(catalogIds(catalog)).toEqual([]);
    // what the killed daemon left: its temporary file, under a name no reader takes
    expect(listTree(store)).toEqual([`.dk.l0.partial-${d.child.pid}`]);

    const again = await startServe();
    try {
      await dumpOk(again, 'dk.l0', catalog);
      expect(listTree(store)).toEqual(['dk.l0']); // the stale temporary file went with it
      expect(fs.statSync(path.join(store, 'dk.l0')).size).toBe(streamSize);
      expect(catalogIds(catalog)).toHaveLength(1);
      await restoresLikeTheSource(again, 'dk.l0', 'dk.vol');
    } finally {
      await again.stop();
    }
  });

  it('of the sender, early, midway and late: the daemon removes its temporary file, keeps serving, and takes the retry', async () => {
    const d = await startServe();
    try {
      for (const [i, share] of [0.05, 0.5, 0.9].entries()) {
        const name = `sk${i}.l0`;
        const catalog = path.join(work, `sender-kill-${i}.json`);
        const before = listTree(store);
        const dump = slowDump(d, name, catalog);
        await waitFor(() => {
          const p = partialOf(d, name);
          return p !== null && fs.statSync(p).size >= streamSize * share;
        }, `${share * 100}% of the stream at the daemon`, 60_000);
        dump.child.kill('SIGKILL');
        expect((await dump.done).signal).toBe('SIGKILL');
        await waitFor(() => partialOf(d, name) === null, 'the daemon to remove its temporary file', 30_000);
        const gone = new RegExp(`stream\\.put failed: network: ${name.replace('.', '\\.')}: the sender went away before the end of the stream`);
        await waitFor(() => gone.test(d.stderr()), 'the daemon to log the failed transfer', 10_000);
        expect(listTree(store)).toEqual(before);
        expect(catalogIds(catalog)).toEqual([]);
        expect(d.alive()).toBe(true);

        await dumpOk(d, name, catalog);
        expect(listTree(store)).toEqual([...before, name].sort());
        expect(catalogIds(catalog)).toHaveLength(1);
      }
      await restoresLikeTheSource(d, 'sk2.l0', 'sk.vol');
    } finally {
      await d.stop();
    }
  });

  it('SIGTERM to the daemon cancels a transfer in progress at once: it exits 0, the dump is told the daemon is shutting down, nothing is left, the retry works', async () => {
    const d = await startServe();
    const catalog = path.join(work, 'sigterm.json');
    const before = listTree(store);
    const dump = slowDump(d, 'term.l0', catalog);
    await waitFor(() => {
      const p = partialOf(d, 'term.l0');
      return p !== null && fs.statSync(p).size >= streamSize / 4;
    }, 'a quarter of the stream at the daemon', 60_000);
    const t0 = Date.now();
    const stopped = await d.stop();
    // the transfer is cancelled, not waited for: the grace period is only a backstop
    expect(Date.now() - t0, 'the daemon took its time to stop').toBeLessThan(1500);
    expect(stopped.stderr).toMatch(/stream\.put failed: network: the daemon is shutting down/);
    expect(stopped.stderr).not.toMatch(/internal error|^\s+at\s/m);
    const r = await dump.done;
    expect(Date.now() - t0, 'the dump took its time to fail').toBeLessThan(3000);
    expectOneLineError(r, 'a dump to a daemon that stops', 12, /^imgstream: peer 127\.0\.0\.1:\d+: the daemon is shutting down \(run it again once the daemon is back\)$/);
    expect(listTree(store)).toEqual(before);
    expect(catalogIds(catalog)).toEqual([]);

    const again = await startServe();
    try {
      await dumpOk(again, 'term.l0', catalog);
      expect(listTree(store)).toEqual([...before, 'term.l0'].sort());
      expect(catalogIds(catalog)).toHaveLength(1);
    } finally {
      await again.stop();
    }
  });
});
