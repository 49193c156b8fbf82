// The mirror and replicate commands on a source volume that `imgstream serve nbd` serves.
// `mirror update` went through the server's control socket; `replicate pull --from`, and
// `mirror abandon` and `mirror status` (which need only the source's uuid), opened the
// volume themselves and were refused busy with a hint for writers ("write through its
// NBD export, or stop the server first"). Now they go through the server too: the pull
// pins the snapshots it sends and reads them from the volume file, as an update does
// (and, writing nothing to the source, from a server that serves it read-only too).
// `mirror status` of a volume a mirror update holds (not served) was refused busy too: it
// reads the uuid through a view now.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_BIN, finished, listeningPort, runCli, spawnCli, writeImage, type CliResult } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { startServer, type RunningServer } from '../nbd/support.js';
import { makeToken } from '../peer/support.js';
import { imageSha, snapshotNamesOf } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 2048; // 8 MiB
const root = tempDir('imgstream-mirror-served-source-');
const at = (f: string) => path.join(root, f);
const locks = at('locks');
const env = { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_MIRROR_STATE: at('mirrors.json') };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function ok(args: string[], opts: { timeoutMs?: number } = {}): CliResult {
  const r = runCli(args, { env, ...opts });
  expect(r.code, `imgstream ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r;
}

// read here as `snapshot list` and `volume export` read them (oracle.ts), through the serving process when there is one
const names = (vol: string): Promise<string[]> => snapshotNamesOf(vol, env);
const exportHash = (ref: string): Promise<string> => imageSha(ref, env);

/** A volume with master snapshot m1 of a random image, then changed (not yet in a snapshot). */
async function sourceVolume(vol: string, seed: number): Promise<void> {
  writeImage(at('img.raw'), BLOCKS, BS, seed, 0.2);
  await setupOk(['volume', 'create', vol, '--size', `${(BLOCKS * BS) >> 20}M`], { env });
  await setupOk(['volume', 'import', vol, '--from', at('img.raw'), '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 'm1', '--master'], { env });
  writeImage(at('img.raw'), BLOCKS, BS, seed + 1, 0.2);
  await setupOk(['volume', 'import', vol, '--from', at('img.raw'), '-q'], { env });
}

/** The replica holds exactly the source's snapshots up to `top`, each the same. */
async function expectReplica(replica: string, source: string, snaps: string[]): Promise<void> {
  expect(await names(replica)).toEqual(snaps);
  for (const s of snaps) expect(await exportHash(`${replica}@${s}`), s).toBe(await exportHash(`${source}@${s}`));
}

describe('replicate pull from a served volume', () => {
  for (const readOnly of [false, true]) {
    it(readOnly ? 'works through a server that serves it read-only; the source records the replica' : 'works through the server: full, then from the newest common master; the source records the replica', async () => {
      const tag = readOnly ? 'ro' : 'rw';
      const vol = at(`${tag}.vol`);
      const replica = at(`${tag}-replica.vol`);
      await sourceVolume(vol, readOnly ? 21 : 31);
      if (readOnly) await setupOk(['snapshot', 'create', vol, 'm2', '--master'], { env });
      let server: RunningServer = await startServer(vol, ['--socket', at(`${tag}.sock`), ...(readOnly ? ['--readonly'] : [])], locks);
      try {
        const first = JSON.parse(ok(['replicate', 'pull', replica, '--from', vol, '--json']).stdout) as { mode: string; top: string };
        expect(first).toMatchObject({ mode: 'full', top: readOnly ? 'm2' : 'm1' });
        if (!readOnly) {
          // a new master taken through the server: the next pull sends only what changed since m1
          ok(['snapshot', 'create', vol, 'm2', '--master']);
          const second = JSON.parse(ok(['replicate', 'pull', replica, '--from', vol, '--json']).stdout) as { mode: string; top: string };
          expect(second).toMatchObject({ mode: 'common', top: 'm2' });
        }
        await expectReplica(replica, vol, ['m1', 'm2']);
        expect(await names(vol), 'the pull took no snapshot of the source').toEqual(['m1', 'm2']);
        const again = ok(['replicate', 'pull', replica, '--from', vol]);
        expect(again.stdout).toContain('is up to date (m2)');
      } finally {
        await server.stop();
      }
      // the source keeps the master the replica pulls from next (recorded by the pull)
      server = await startServer(vol, ['--socket', at(`${tag}.sock`)], locks);
      try {
        const del = runCli(['snapshot', 'delete', vol, 'm2'], { env });
        expect(del.code, del.stderr).not.toBe(0);
        expect(del.stderr).toContain(replica);
      } finally {
        await server.stop();
      }
      expect(fs.readdirSync(root).filter((f) => f.startsWith(`.${tag}`))).toEqual([]);
    });
  }

  it('through a peer daemon whose volume is served: the daemon sends it through the server', async () => {
    const dir = at('peer');
    fs.mkdirSync(dir);
    const vol = path.join(dir, 'p');
    await sourceVolume(vol, 41);
    await setupOk(['snapshot', 'create', vol, 'm2', '--master'], { env });
    const server = await startServer(vol, ['--socket', at('p.sock')], locks);
    const token = makeToken(root);
    const daemon = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const ended = finished(daemon, 300_000);
    try {
      const url = `peer://127.0.0.1:${await listeningPort(daemon, ended)}/p`;
      const replica = at('p-replica.vol');
      const r = JSON.parse(ok(['replicate', 'pull', replica, '--from', url, '--token-file', token, '--plain', '--json']).stdout) as { mode: string; top: string };
      expect(r).toMatchObject({ mode: 'full', top: 'm2' });
      await expectReplica(replica, vol, ['m1', 'm2']);
    } finally {
      daemon.kill('SIGTERM');
      await ended;
      await server.stop();
    }
  });
});

describe('mirror status and mirror abandon of a served volume', () => {
  it('show and drop a transfer killed part way, through the server', async () => {
    const vol = at('a.vol');
    const dest = at('a-mirror.vol');
    await sourceVolume(vol, 51);
    const server = await startServer(vol, ['--socket', at('a.sock')], locks);
    try {
      const child = spawnCli(['mirror', 'update', vol, '--to', dest, '--limit-rate', '2M'], { env });
      const done = finished(child, 60_000);
      const until = Date.now() + 20_000;
      while (!fs.existsSync(at('.a-mirror.vol.mirror-transfer')) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      child.kill('SIGKILL');
      expect((await done).signal).toBe('SIGKILL');

      type Status = { relationships: Array<{ destination: string; state: string; pending: unknown }> };
      const before = JSON.parse(ok(['mirror', 'status', vol, '--json']).stdout) as Status;
      expect(before.relationships.map((r) => [r.destination, r.state])).toEqual([[dest, 'stopped']]);
      expect(before.relationships[0].pending).not.toBe(null);
      const text = ok(['mirror', 'status', vol]).stdout;
      expect(text).toContain('is gone (killed outright): the next update resumes the transfer');
      expect(text).toContain(dest);

      const dropped = JSON.parse(ok(['mirror', 'abandon', vol, '--to', dest, '--json']).stdout) as { files: string[] };
      expect(dropped.files).toEqual(expect.arrayContaining(['.a-mirror.vol.mirror-new', '.a-mirror.vol.mirror-transfer']));
      expect(fs.readdirSync(root).filter((f) => f.startsWith('.a-mirror'))).toEqual([]);
      const after = JSON.parse(ok(['mirror', 'status', vol, '--json']).stdout) as Status;
      expect(after.relationships[0]).toMatchObject({ state: 'idle', pending: null });

      // the next update starts over and makes an exact mirror
      const next = JSON.parse(ok(['mirror', 'update', vol, '--to', dest, '--json'], { timeoutMs: 120_000 }).stdout) as { transfers: Array<{ mode: string; resumedRecords: number }> };
      expect(next.transfers.map((t) => [t.mode, t.resumedRecords])).toEqual([['full', 0]]);
      for (const s of await names(vol)) expect(await exportHash(`${dest}@${s}`), s).toBe(await exportHash(`${vol}@${s}`));
    } finally {
      await server.stop();
    }
  });
});

describe('mirror status while an update of an unserved volume runs', () => {
  it('shows the transfer (it was refused busy: the update holds the volume), and mirror abandon is refused by the destination, not the source', async () => {
    const vol = at('b.vol');
    const dest = at('b-mirror.vol');
    await sourceVolume(vol, 61);
    const child = spawnCli(['mirror', 'update', vol, '--to', dest, '--limit-rate', '2M'], { env });
    const done = finished(child, 60_000);
    try {
      const until = Date.now() + 20_000;
      while (!fs.existsSync(at('.b-mirror.vol.mirror-transfer')) && Date.now() < until) await new Promise((r) => setTimeout(r, 20));
      type Status = { uuid: string; relationships: Array<{ destination: string; state: string }> };
      const status = JSON.parse(ok(['mirror', 'status', vol, '--json']).stdout) as Status;
      expect(status.relationships.map((r) => [r.destination, r.state])).toEqual([[dest, 'transferring']]);
      const abandon = runCli(['mirror', 'abandon', vol, '--to', dest], { env });
      expect(abandon.code, abandon.stderr).toBe(7);
      expect(abandon.stderr).toContain(`${dest}: a mirror transfer into it is in progress (imgstream process ${child.pid}: mirror update)`);
    } finally {
      const r = await done;
      expect(r.code, r.stderr).toBe(0);
    }
    for (const s of await names(vol)) expect(await exportHash(`${dest}@${s}`), s).toBe(await exportHash(`${vol}@${s}`));
  });
});
