// SIGTERM to a real `imgstream serve peer` while real clients transfer through it, for the
// clients that keep state across attempts: a `mirror update` (the destination stays at
// its previous state, the client exits 12 saying the daemon is shutting down, the next
// update resumes and converges; a `mirror resync` says to run the resync again, which
// starts over) and `protect` (it says why it waits, retries, and seeds
// once a daemon is back on the same port). The daemon exits at once instead of waiting
// out its grace period. (A dump's transfer: kill9.test.ts.)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, finished, listeningPort, spawnCli, writeImage, type CliResult } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { imageSha, snapshotNamesOf } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';
import { expectOneLineError } from '../support/stream-cli.js';
import { startProtect } from '../support/protect-cli.js';
import { startServer } from '../nbd/support.js';
import { listTree, makeToken, waitFor } from './support.js';

const BS = 4096;
const root = tempDir('imgstream-peer-shutdown-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json'), XDG_STATE_HOME: path.join(root, 'state') };
const at = (f: string) => path.join(root, f);
let token = '';

beforeAll(() => {
  fs.mkdirSync(root, { recursive: true });
  token = makeToken(root);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface Daemon {
  port: number;
  stderr(): string;
  /** SIGTERM; resolves with the exit and how long it took. */
  stop(): Promise<CliResult & { ms: number }>;
}

/** `imgstream serve peer --plain` on `port` (0: any) with this test's lock and state directories. */
async function daemon(dir: string, port = 0): Promise<Daemon> {
  fs.mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', `127.0.0.1:${port}`, '--token-file', token, '--plain', '--json'], {
    env: { ...process.env, ...env, NODE_ENV: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString('utf8')));
  const done = finished(child, 600_000);
  const bound = await listeningPort(child, done);
  return {
    port: bound,
    stderr: () => err,
    async stop() {
      const t0 = Date.now();
      child.kill('SIGTERM');
      const r = await done;
      return { ...r, ms: Date.now() - t0 };
    },
  };
}

/** The daemon stopped at once, cleanly, and logged the transfer it cancelled. */
function expectPromptStop(r: CliResult & { ms: number }, op: string): void {
  expect(r.code, r.stderr).toBe(0);
  // the grace period (3 s) is only a backstop: a transfer is cancelled, not waited for
  expect(r.ms, 'the daemon took its time to stop').toBeLessThan(1500);
  expect(r.stderr).toMatch(new RegExp(`${op.replace('.', '\\.')} failed: network: the daemon is shutting down`));
  expect(r.stderr).not.toMatch(/internal error|^\s+at\s/m);
}

/** An 8 MiB volume NAME.vol holding a random image NAME.img (seed), and the daemon root DIR for its mirror. */
async function sourceVolume(dir: string, name: string, seed: number): Promise<{ dir: string; src: string; img: Buffer }> {
  const src = at(`${name}.vol`);
  const blocks = 2048;
  await setupOk(['volume', 'create', src, '--size', `${(blocks * BS) >> 20}M`, '--volume-size', '64M', '--max-snapshots', '16'], { env });
  const img = writeImage(at(`${name}.img`), blocks, BS, seed, 0.1);
  await setupOk(['volume', 'import', src, '--from', at(`${name}.img`)], { env });
  return { dir: at(dir), src, img };
}

describe('SIGTERM to a peer daemon in the middle of a transfer', () => {
  it('mirror update: exits 12 saying the daemon is shutting down, the mirror stays as it was, the next update resumes and converges', async () => {
    const { dir, src, img } = await sourceVolume('mirror-peer', 'm', 5);
    let d = await daemon(dir);
    const url = () => `peer://127.0.0.1:${d.port}/m`;
    const peer = ['--token-file', token, '--plain'];
    const first = await finished(spawnCli(['mirror', 'update', src, '--to', url(), ...peer, '--json'], { env }), 120_000);
    expect(first.code, first.stderr).toBe(0);
    const mirror = path.join(dir, 'm');
    const before = { active: await imageSha(mirror, env), snapshots: await snapshotNamesOf(mirror, env) };

    // most of the disk changes; the update to it crawls at 1 MB/s
    mutate(img, BS, 1500, 6);
    fs.writeFileSync(at('m.img'), img);
    await setupOk(['volume', 'import', src, '--from', at('m.img')], { env });
    const update = spawnCli(['mirror', 'update', src, '--to', url(), ...peer, '--limit-rate', '1M', '--compress', 'none', '--json'], { env });
    const updated = finished(update, 120_000);
    // under way: the destination acknowledged part of it
    const resume = path.join(dir, '.m.mirror-transfer');
    await waitFor(() => {
      try {
        return ((JSON.parse(fs.readFileSync(resume, 'utf8')) as { acked?: number }).acked ?? 0) > 0;
      } catch {
        return false;
      }
    }, 'the destination to acknowledge part of the transfer', 60_000);
    const t0 = Date.now();
    expectPromptStop(await d.stop(), 'mirror.update');
    const r = await updated;
    expect(Date.now() - t0, 'the update took its time to fail').toBeLessThan(3000);
    expectOneLineError(r, 'a mirror update to a daemon that stops', 12, /^imgstream: peer:\/\/127\.0\.0\.1:\d+\/m: the daemon is shutting down; run it again once the daemon is back: it resumes from the .* of this transfer the destination keeps \(\.m\.mirror-[^)]*\), or drop them with: imgstream mirror abandon \S+ --to peer:\/\/127\.0\.0\.1:\d+\/m, with the same --token-file and TLS flags$/);
    // the mirror is at its previous state, byte for byte
    expect(await imageSha(mirror, env)).toBe(before.active);
    expect(await snapshotNamesOf(mirror, env)).toEqual(before.snapshots);

    d = await daemon(dir, d.port);
    try {
      const again = await finished(spawnCli(['mirror', 'update', src, '--to', url(), ...peer, '--json'], { env }), 120_000);
      expect(again.code, again.stderr).toBe(0);
      const result = JSON.parse(again.stdout) as { resumedRecords: number; top: string; transfers: unknown[] };
      expect(result.resumedRecords + (result.transfers.length > 1 ? 1 : 0), 'it resumed instead of starting over').toBeGreaterThan(0);
      expect(await imageSha(mirror, env)).toBe(await imageSha(`${src}@${result.top}`, env));
      expect(await imageSha(mirror, env)).toBe(await imageSha(src, env));
      expect(listTree(dir).filter((f) => f.startsWith('.')), 'nothing of the stopped transfer is left').toEqual([]);
    } finally {
      await d.stop();
    }
  });

  it('mirror resync: exits 12 and its hint is a resync\'s (it starts over, the mirror stays broken off), never "it resumes"; running it converges', async () => {
    const { dir, src, img } = await sourceVolume('resync-peer', 'r', 8);
    let d = await daemon(dir);
    const url = () => `peer://127.0.0.1:${d.port}/r`;
    const peer = ['--token-file', token, '--plain'];
    expect((await finished(spawnCli(['mirror', 'update', src, '--to', url(), ...peer], { env }), 120_000)).code).toBe(0);
    expect((await finished(spawnCli(['mirror', 'break', url(), ...peer], { env }), 60_000)).code).toBe(0);
    mutate(img, BS, 1500, 9);
    fs.writeFileSync(at('r.img'), img);
    await setupOk(['volume', 'import', src, '--from', at('r.img')], { env });
    const resync = finished(spawnCli(['mirror', 'resync', src, '--to', url(), ...peer, '--limit-rate', '1M', '--compress', 'none'], { env }), 120_000);
    const resume = path.join(dir, '.r.mirror-transfer');
    await waitFor(() => {
      try {
        return ((JSON.parse(fs.readFileSync(resume, 'utf8')) as { acked?: number }).acked ?? 0) > 0;
      } catch {
        return false;
      }
    }, 'the destination to acknowledge part of the resync', 60_000);
    expectPromptStop(await d.stop(), 'mirror.resync');
    const r = await resync;
    const u = String.raw`peer:\/\/127\.0\.0\.1:\d+\/r`;
    const flags = String.raw`, with the same --token-file and TLS flags`;
    expectOneLineError(r, 'a mirror resync to a daemon that stops', 12, new RegExp(String.raw`^imgstream: ${u}: the daemon is shutting down; the mirror stays broken off until a resync completes: run it again once the daemon is back, it starts over and drops the [\d.]+ [KM]iB this one kept at the destination \(\.r\.mirror-[^)]*\): imgstream mirror resync \S+ --to ${u}${flags}; to drop them now: imgstream mirror abandon \S+ --to ${u}${flags}$`));
    expect(r.stderr).not.toMatch(/resumes/);
    // mirror status says the same of what it kept
    const status = await finished(spawnCli(['mirror', 'status', src], { env }), 60_000);
    expect(status.stdout).toMatch(/\n {2}partial transfer kept at the destination by a resync that did not complete \(the next one starts over and drops it\): [\d.]+ [KM]iB /);

    d = await daemon(dir, d.port);
    try {
      // as the hint says: an update is refused, the resync runs again from the start and converges
      expect((await finished(spawnCli(['mirror', 'update', src, '--to', url(), ...peer], { env }), 60_000)).code).toBe(4);
      const again = await finished(spawnCli(['mirror', 'resync', src, '--to', url(), ...peer, '--json'], { env }), 120_000);
      expect(again.code, again.stderr).toBe(0);
      const result = JSON.parse(again.stdout) as { resumedRecords: number; top: string };
      expect(result.resumedRecords).toBe(0);
      expect(await imageSha(path.join(dir, 'r'), env)).toBe(await imageSha(src, env));
      expect(listTree(dir).filter((f) => f.startsWith('.')), 'nothing of the stopped resync is left').toEqual([]);
    } finally {
      await d.stop();
    }
  });

  it('protect: waits saying the daemon is shutting down, retries, and seeds exactly once a daemon is back on the same port', async () => {
    const vol = at('p.vol');
    const size = 8 << 20;
    const base = randomImage(size / BS, BS, 7, 0.5);
    fs.writeFileSync(at('p.raw'), base);
    await setupOk(['volume', 'create', vol, '--size', String(size)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('p.raw')], { env });
    const server = await startServer(vol, ['--socket', at('p.sock'), '--journal', '--cp-interval', '0.2'], locks);
    const dir = at('protect-peer');
    let d = await daemon(dir);
    const url = `peer://127.0.0.1:${d.port}/p.cdp`;
    // the seed (4 MiB of data) crawls at 1 MB/s
    const shipper = startProtect(vol, url, ['--interval', '250ms', '--token-file', token, '--plain', '--limit-rate', '1M'], env);
    try {
      await waitFor(() => /protect\.ship p\.cdp\n/.test(d.stderr()), 'the shipper to start its session', 30_000);
      await new Promise((r) => setTimeout(r, 1200)); // well into the seed
      expect(shipper.events.filter((e) => e.event === 'seed'), 'still seeding').toEqual([]);
      expectPromptStop(await d.stop(), 'protect.ship');
      const waiting = await shipper.waitFor((e) => e.event === 'waiting', 10_000);
      expect(String(waiting.reason)).toMatch(/peer 127\.0\.0\.1:\d+: the daemon is shutting down/);
      // the cancelled seed left no temporary base behind
      expect(listTree(path.join(dir, 'p.cdp')).filter((f) => /seeding/.test(f))).toEqual([]);

      d = await daemon(dir, d.port);
      await shipper.waitFor((e) => e.event === 'seed', 60_000);
      const stopped = await shipper.stop();
      expect(stopped.code, stopped.stderr).toBe(0);
      expect(shipper.events.filter((e) => e.event === 'seed')).toHaveLength(1);
      const st = await finished(spawnCli(['protect', 'status', url, '--token-file', token, '--plain', '--json'], { env }), 60_000);
      expect(st.code, st.stderr).toBe(0);
      const end = (JSON.parse(st.stdout) as { window: { end: string } }).window.end;
      const out = await finished(spawnCli(['volume', 'export', url, '--as-of', end, '--token-file', token, '--plain', '--to', at('p.out')], { env }), 60_000);
      expect(out.code, out.stderr).toBe(0);
      expect(fs.readFileSync(at('p.out')).equals(base), 'the destination holds the disk').toBe(true);
    } finally {
      if (shipper.child.exitCode === null) await shipper.stop();
      await d.stop();
      await server.stop();
    }
  });
});
