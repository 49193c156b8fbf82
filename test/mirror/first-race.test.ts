// Two first transfers into one destination at once (cron starting the next update of a
// served volume before the first ended, a user retrying): there is no mirror volume yet
// whose lock would keep the second out, and both used `.NAME.mirror-new`: the second
// failed (busy about the side file, with a hint to resume or abandon "its" transfer, or
// exit 10 on EEXIST) and, failing, dropped the side files of the first, which then failed
// at its link into place. Now the destination itself is locked for the conversation: one
// completes an exact mirror, the other is refused at once (exit 7, one line naming the
// transfer under way and its process) and changes nothing, on a path and through a peer
// daemon. A transfer killed with -9 leaves no lock that counts: the next one resumes it.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_BIN, finished, listeningPort, runCli, runCliAsync, spawnCli, writeImage, type CliResult } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { startServer } from '../nbd/support.js';
import { makeToken } from '../peer/support.js';
import { imageSha } from '../support/oracle.js';
import { inProcessJson, setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 6144; // 24 MiB: a few seconds at --limit-rate 6M
const root = tempDir('imgstream-mirror-first-race-');
const at = (f: string) => path.join(root, f);
const locks = at('locks');
const env = { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_MIRROR_STATE: at('mirrors.json') };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface Snap {
  id: number;
  name: string;
}

/** VOL's snapshots (`snapshot list`, a check run here, not as a process). */
const snapshots = async (vol: string): Promise<Snap[]> => (await inProcessJson<{ snapshots: Snap[] }>(['snapshot', 'list', vol], { env })).snapshots;

/** sha256 of the disk at REF, read here as `volume export` reads it (oracle.ts). */
const exportHash = (ref: string): Promise<string> => imageSha(ref, env);

/** A served volume with a snapshot of a random image (the source of every update here). */
async function servedSource(name: string, seed: number) {
  const vol = at(`${name}.vol`);
  writeImage(at(`${name}.raw`), BLOCKS, BS, seed, 0.1);
  await setupOk(['volume', 'create', vol, '--size', `${(BLOCKS * BS) >> 20}M`], { env });
  await setupOk(['volume', 'import', vol, '--from', at(`${name}.raw`), '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 'user1'], { env });
  return { vol, server: await startServer(vol, ['--socket', at(`${name}.sock`)], locks) };
}

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/**
 * Starts a slow first update of `vol` into `to` and, once its destination builds the
 * mirror in `fresh`, a second one; returns both results and what the source held
 * between the second's start and end.
 */
async function race(vol: string, to: string, fresh: string, extra: string[]) {
  const first = spawnCli(['mirror', 'update', vol, '--to', to, '--limit-rate', '6M', '--json', ...extra], { env });
  const firstDone = finished(first, 120_000);
  let firstEnded = false;
  void firstDone.then(() => (firstEnded = true));
  await until(() => fs.existsSync(fresh) || firstEnded, `${fresh}`);
  const before = await snapshots(vol);
  const second: CliResult = await runCliAsync(['mirror', 'update', vol, '--to', to, ...extra], { env, timeoutMs: 60_000 });
  const secondWhileFirstRan = !firstEnded;
  const during = await snapshots(vol);
  return { first, firstResult: await firstDone, second, secondWhileFirstRan, before, during };
}

describe('two first mirror transfers into one destination at once', () => {
  it('to a path: one completes an exact mirror, the other is refused at once (busy, one line, naming it) and changes nothing', async () => {
    const { vol, server } = await servedSource('a', 11);
    const dest = at('a-mirror.vol');
    try {
      const r = await race(vol, dest, at('.a-mirror.vol.mirror-new'), []);
      expect(r.secondWhileFirstRan, 'the second ended while the first still ran').toBe(true);
      expect(r.second.code, r.second.stderr).toBe(7);
      expect(r.second.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.second.stderr).toContain(`${dest}: a mirror transfer into it is in progress (imgstream process ${r.first.pid}: mirror update)`);
      expect(r.second.stderr).not.toMatch(/keeps|abandon|mirror-new/);
      expect(r.during, 'the refused update took no snapshot').toEqual(r.before);
      expect(r.firstResult.code, r.firstResult.stderr).toBe(0);
      const done = JSON.parse(r.firstResult.stdout) as { mode: string; top: string };
      expect(done.mode).toBe('full');
      // an exact mirror: every snapshot of the source, the same
      const names = (await snapshots(vol)).map((s) => s.name);
      expect(names).toEqual(['user1', done.top]);
      expect((await snapshots(dest)).map((s) => s.name)).toEqual(names);
      for (const n of names) expect(await exportHash(`${dest}@${n}`), n).toBe(await exportHash(`${vol}@${n}`));
      expect(fs.readdirSync(root).filter((f) => f.startsWith('.a-mirror.vol.')), 'no side file left').toEqual([]);
    } finally {
      await server.stop();
    }
  });

  it('through a peer daemon: the same, the refusal naming the source process that holds it', async () => {
    const { vol, server } = await servedSource('b', 12);
    const dir = at('peer');
    fs.mkdirSync(dir);
    const token = makeToken(root);
    const daemon = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const ended = finished(daemon, 300_000);
    try {
      const url = `peer://127.0.0.1:${await listeningPort(daemon, ended)}/m`;
      // raw: the wire rate, not the compression, sets how long the first takes
      const r = await race(vol, url, path.join(dir, '.m.mirror-new'), ['--token-file', token, '--plain', '--compress', 'none']);
      expect(r.secondWhileFirstRan, 'the second ended while the first still ran').toBe(true);
      expect(r.second.code, r.second.stderr).toBe(7);
      expect(r.second.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.second.stderr).toMatch(new RegExp(`^imgstream: ${url}: a mirror transfer into it is in progress \\(imgstream process ${r.first.pid} at 127\\.0\\.0\\.1:\\d+\\)`));
      expect(r.second.stderr).not.toContain(dir);
      expect(r.during, 'the refused update took no snapshot').toEqual(r.before);
      expect(r.firstResult.code, r.firstResult.stderr).toBe(0);
      const names = (await snapshots(vol)).map((s) => s.name);
      expect(names).toHaveLength(2);
      const mirror = path.join(dir, 'm');
      expect((await snapshots(mirror)).map((s) => s.name)).toEqual(names);
      for (const n of names) expect(await exportHash(`${mirror}@${n}`), n).toBe(await exportHash(`${vol}@${n}`));
      expect(fs.readdirSync(dir)).toEqual(['m']);
    } finally {
      daemon.kill('SIGTERM');
      await ended;
      await server.stop();
    }
  });

  it('a first transfer killed with -9 leaves no lock that refuses the next update, which resumes it', async () => {
    const { vol, server } = await servedSource('c', 13);
    const dest = at('c-mirror.vol');
    try {
      const first = spawnCli(['mirror', 'update', vol, '--to', dest, '--limit-rate', '6M'], { env });
      const done = finished(first, 120_000);
      await until(() => fs.existsSync(at('.c-mirror.vol.mirror-transfer')), 'the first acknowledgement');
      first.kill('SIGKILL');
      expect((await done).signal).toBe('SIGKILL');
      const next = runCli(['mirror', 'update', vol, '--to', dest, '--json'], { env, timeoutMs: 120_000 });
      expect(next.code, next.stderr).toBe(0);
      const run = JSON.parse(next.stdout) as { transfers: Array<{ mode: string; resumedRecords: number }> };
      expect(run.transfers[0].resumedRecords).toBeGreaterThan(0);
      for (const n of (await snapshots(vol)).map((s) => s.name)) expect(await exportHash(`${dest}@${n}`), n).toBe(await exportHash(`${vol}@${n}`));
    } finally {
      await server.stop();
    }
  });
});
