// Mirroring through real `imgstream serve peer` daemons and real `imgstream mirror`
// processes: rounds of writes, snapshot creations and deletions with a byte-for-byte
// comparison of every snapshot at the destination; faults (the connection cut at random
// byte offsets by a proxy, in both directions, 9 times; the daemon and the sender
// killed -9 mid-transfer), after each of which the destination is at a complete earlier
// state and a later update converges; TLS with a pinned certificate; names that try to
// leave the daemon's directory; break/resync and a cascade of two peers; replica pulls.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, finished, runCli, runCliAsync, sha256, spawnCli, writeImage, listeningPort } from '../support/cli.js';
import { mutate, rng, tempDir } from '../support/images.js';
import { startCutProxy } from '../support/cut-proxy.js';
import { checkReportOf, imageSha, snapshotNamesOf } from '../support/oracle.js';
import { hasOpenssl, makeCert, makeToken } from '../peer/support.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 2048; // 8 MiB
const root = tempDir('imgstream-mirror-peer-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json'), XDG_STATE_HOME: path.join(root, 'state') };
const at = (f: string) => path.join(root, f);
const random = rng(0xfa17);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface Daemon {
  port: number;
  dir: string;
  kill9(): Promise<void>;
  stop(): Promise<void>;
}

/** `imgstream serve peer` as a user runs it, with this test's state and lock directories. */
async function daemon(name: string, extra: string[] = [], extraEnv: Record<string, string> = {}): Promise<Daemon> {
  const dir = at(name);
  fs.mkdirSync(dir, { recursive: true });
  const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', '127.0.0.1:0', '--token-file', token(), ...(extra.length ? extra : ['--plain']), '--json'], {
    env: { ...process.env, ...env, ...extraEnv, NODE_ENV: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const done = finished(child, 900_000);
  const port = await listeningPort(child, done);
  return {
    port,
    dir,
    async kill9() {
      child.kill('SIGKILL');
      await done;
    },
    async stop() {
      child.kill('SIGTERM');
      await done;
    },
  };
}

let tokenFile = '';
const token = () => tokenFile;
const peerArgs = (extra: string[] = ['--plain']) => ['--token-file', token(), ...extra];

function cli(args: string[]) {
  const r = runCli(args, { env, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`imgstream ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
  return r;
}

/** sha256 of the disk at REF, as `volume export REF --to -` writes it (read here: oracle.ts). */
const hashOf = (ref: string): Promise<string> => imageSha(ref, env);
const snapshots = (vol: string): Promise<string[]> => snapshotNamesOf(vol, env);

/** Every snapshot of `src` and its active file system are on `dest`, byte for byte. */
async function expectReplica(src: string, dest: string, what: string): Promise<void> {
  const names = await snapshots(src);
  for (const s of names) expect(await hashOf(`${dest}@${s}`), `${what}: ${s}`).toBe(await hashOf(`${src}@${s}`));
  const top = names.filter((s) => s.startsWith('mirror.')).pop();
  if (top) expect(await hashOf(dest), `${what}: active`).toBe(await hashOf(`${src}@${top}`));
}

async function writeRandom(vol: string, img: Buffer, count: number, seed: number): Promise<void> {
  mutate(img, BS, count, seed);
  fs.writeFileSync(at('img'), img);
  await setupOk(['volume', 'import', vol, '--from', at('img')], { env });
}

beforeAll(() => {
  fs.mkdirSync(root, { recursive: true });
  tokenFile = makeToken(root);
});

describe('mirroring through peer daemons', () => {
  it('rounds of writes, snapshots and deletions, each followed by an update and a comparison of every snapshot', async () => {
    // its writes start late, so a payload buffer read into again before they are done shows
    const d = await daemon('peer-rounds', [], { IMGSTREAM_SLOW_WRITES: '20' });
    try {
      const src = at('rounds.vol');
      await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`, '--volume-size', '64M', '--max-snapshots', '16'], { env });
      const img = writeImage(at('img'), BLOCKS, BS, 1, 0.2);
      await setupOk(['volume', 'import', src, '--from', at('img')], { env });
      const url = `peer://127.0.0.1:${d.port}/rounds`;
      let users = 0;
      for (let round = 0; round < 4; round++) {
        if (round > 0) await writeRandom(src, img, 100 + round * 50, 10 + round);
        if (round % 2 === 1) await setupOk(['snapshot', 'create', src, `user${users++}`], { env });
        if (round === 3) await setupOk(['snapshot', 'delete', src, 'user0'], { env });
        const r = JSON.parse(cli(['mirror', 'update', src, '--to', url, ...peerArgs(), '--json']).stdout) as { mode: string; blocks: number; bytes: number };
        expect(r.mode).toBe(round === 0 ? 'full' : 'moa');
        await expectReplica(src, path.join(d.dir, 'rounds'), `round ${round}`);
      }
      const status = JSON.parse(cli(['mirror', 'status', src, '--json']).stdout) as { relationships: Array<{ destination: string; state: string; lagSeconds: number }> };
      expect(status.relationships).toHaveLength(1);
      expect(status.relationships[0].state).toBe('idle');
      expect(status.relationships[0].destination).toBe(url);
    } finally {
      await d.stop();
    }
  });

  it('survives cut connections, a killed daemon and a killed sender, and converges', async () => {
    let d = await daemon('peer-faults');
    const proxy = await startCutProxy(d.port);
    const src = at('faults.vol');
    const dest = () => path.join(d.dir, 'm');
    await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`, '--volume-size', '64M', '--max-snapshots', '16'], { env });
    const img = writeImage(at('img'), BLOCKS, BS, 2, 0.2);
    await setupOk(['volume', 'import', src, '--from', at('img')], { env });
    const states = new Set<string>();
    let prev: string | null = null;
    const check = async (what: string) => {
      if (!fs.existsSync(dest())) {
        expect(prev, `${what}: the mirror vanished`).toBe(null);
        return;
      }
      // the daemon may still be closing the cut session's volume: busy for a moment, as for any command
      let h = '';
      for (let i = 0; ; i++) {
        try {
          h = await hashOf(dest());
          break;
        } catch (e) {
          if (i >= 100 || !/is in use by imgstream process/.test((e as Error).message)) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      expect(states.has(h), `${what}: the mirror is not at a complete state of the source`).toBe(true);
      expect((await checkReportOf(dest(), env)).ok, what).toBe(true);
      prev = h;
    };
    try {
      let cuts = 0;
      // 6 cuts, each direction twice: CI time is shared with the journal's kill tests (the mirror's own kill -9 rounds follow)
      for (let k = 0; k < 6; k++) {
        await writeRandom(src, img, 150 + Math.floor(random() * 300), 100 + k);
        states.add(sha256(img));
        // at a random byte of the transfer: the source sends ~0.6-1.8 MB raw (these test
        // images compress to ~10-30 KB: every other round is zstd, cut within that), the
        // mirror answers a few KB
        proxy.direction = (['up', 'down', 'both'] as const)[k % 3];
        const zstd = k % 2 === 1;
        proxy.cutAfter = Math.floor(random() * (proxy.direction === 'down' ? 2500 : zstd ? 12_000 : 700_000));
        // async: the proxy runs in this process
        const r = await runCliAsync(['mirror', 'update', src, '--to', `peer://127.0.0.1:${proxy.port}/m`, ...peerArgs(), '--json', '--compress', zstd ? 'zstd' : 'none'], { env, timeoutMs: 120_000 });
        if (r.code !== 0) {
          cuts++;
          expect(r.stderr.trim().split('\n'), `cut ${k}: one line`).toHaveLength(1);
        }
        await check(`cut ${k} at ${proxy.cutAfter} bytes (${proxy.direction})`);
      }
      expect(cuts).toBeGreaterThanOrEqual(3);
      proxy.cutAfter = null;
      // the daemon killed -9 during a transfer, twice (restarted on the same directory)
      for (let k = 0; k < 2; k++) {
        await writeRandom(src, img, 800, 200 + k);
        states.add(sha256(img));
        // raw: compressed, these images' transfers end before the kill
        const sender = runCliAsync(['mirror', 'update', src, '--to', `peer://127.0.0.1:${d.port}/m`, ...peerArgs(), '--limit-rate', '2M', '--compress', 'none'], { env, timeoutMs: 120_000 });
        await new Promise((r) => setTimeout(r, 300 + Math.floor(random() * 1200)));
        await d.kill9();
        const r = await sender;
        expect(r.code === 0 || r.stderr.trim().split('\n').length === 1).toBe(true);
        d = await daemon('peer-faults');
        await check(`daemon killed ${k}`);
      }
      // the sender killed -9, twice
      for (let k = 0; k < 2; k++) {
        await writeRandom(src, img, 800, 300 + k);
        states.add(sha256(img));
        const child = spawnCli(['mirror', 'update', src, '--to', `peer://127.0.0.1:${d.port}/m`, ...peerArgs(), '--limit-rate', '2M', '--compress', 'none'], { env });
        const ended = finished(child, 120_000);
        setTimeout(() => child.kill('SIGKILL'), 300 + Math.floor(random() * 1200));
        await ended;
        await check(`sender killed ${k}`);
      }
      // and then one update brings the mirror to now
      cli(['mirror', 'update', src, '--to', `peer://127.0.0.1:${d.port}/m`, ...peerArgs()]);
      expect(await hashOf(dest())).toBe(sha256(img));
      await expectReplica(src, dest(), 'after the faults');
      expect(fs.readdirSync(d.dir).filter((f) => f.startsWith('.'))).toEqual([]);
    } finally {
      await proxy.close();
      await d.stop();
    }
  });

  it.skipIf(!hasOpenssl)('mirrors over TLS with a pinned certificate, and refuses a wrong one, a wrong token and names leaving the directory', async () => {
    const cert = makeCert(root, 'daemon');
    const other = makeCert(root, 'other');
    const d = await daemon('peer-tls', ['--tls-cert', cert.cert, '--tls-key', cert.key]);
    try {
      const src = at('tls.vol');
      await setupOk(['volume', 'create', src, '--size', '4M'], { env });
      writeImage(at('img4'), 1024, BS, 3, 0.2);
      await setupOk(['volume', 'import', src, '--from', at('img4')], { env });
      const url = `peer://127.0.0.1:${d.port}/tls`;
      cli(['mirror', 'update', src, '--to', url, ...peerArgs(['--tls-fingerprint', cert.fingerprint])]);
      await expectReplica(src, path.join(d.dir, 'tls'), 'tls');
      const wrongCert = runCli(['mirror', 'update', src, '--to', url, ...peerArgs(['--tls-fingerprint', other.fingerprint])], { env });
      expect(wrongCert.code).not.toBe(0);
      const wrongToken = runCli(['mirror', 'update', src, '--to', url, '--token-file', makeToken(root, 'other-token'), '--tls-fingerprint', cert.fingerprint], { env });
      expect(wrongToken.code).not.toBe(0);
      for (const name of ['../escape', '%2e%2e/escape']) {
        const r = runCli(['mirror', 'update', src, '--to', `peer://127.0.0.1:${d.port}/${name}`, ...peerArgs(['--tls-fingerprint', cert.fingerprint])], { env });
        expect(r.code, name).not.toBe(0);
        expect(r.stderr.trim().split('\n')).toHaveLength(1);
      }
      expect(fs.existsSync(at('escape'))).toBe(false);
      expect(fs.readdirSync(root).filter((f) => f.includes('escape'))).toEqual([]);
    } finally {
      await d.stop();
    }
  });

  it('breaks and resyncs, cascades through two peers, and pulls a replica to a master snapshot', async () => {
    const p1 = await daemon('peer-one');
    const p2 = await daemon('peer-two');
    try {
      const a = at('a.vol');
      await setupOk(['volume', 'create', a, '--size', `${(BLOCKS * BS) >> 20}M`, '--max-snapshots', '16'], { env });
      const img = writeImage(at('img'), BLOCKS, BS, 4, 0.2);
      await setupOk(['volume', 'import', a, '--from', at('img')], { env });
      const b = path.join(p1.dir, 'b');
      const c = path.join(p2.dir, 'c');
      for (let round = 0; round < 3; round++) {
        if (round) await writeRandom(a, img, 200, 400 + round);
        cli(['mirror', 'update', a, '--to', `peer://127.0.0.1:${p1.port}/b`, ...peerArgs()]);
        // b (a mirror on the first peer) feeds c on the second
        cli(['mirror', 'update', b, '--to', `peer://127.0.0.1:${p2.port}/c`, ...peerArgs()]);
        await expectReplica(a, c, `cascade round ${round}`);
      }
      // break the first mirror through its daemon, write to it, resync from the source
      cli(['mirror', 'break', `peer://127.0.0.1:${p1.port}/b`, ...peerArgs()]);
      cli(['snapshot', 'create', b, 'local-change']);
      await writeRandom(a, img, 100, 500);
      const refused = runCli(['mirror', 'update', a, '--to', `peer://127.0.0.1:${p1.port}/b`, ...peerArgs()], { env });
      expect(refused.code).toBe(4);
      // the hint runs as printed: this source, and the destination as this side names it (never the daemon's path)
      expect(refused.stderr).toContain(`broken off and may have changed (bring it back with: imgstream mirror resync ${a} --to peer://127.0.0.1:${p1.port}/b, with the same --token-file and TLS flags)`);
      const rs = JSON.parse(cli(['mirror', 'resync', a, '--to', `peer://127.0.0.1:${p1.port}/b`, ...peerArgs(), '--json']).stdout) as { mode: string; blocks: number };
      expect(rs.mode).toBe('common');
      expect(rs.blocks).toBeLessThan(200 + 40);
      await expectReplica(a, b, 'after resync');
      expect(await snapshots(b)).not.toContain('local-change');
      // a replica pulls a's newest master snapshot through the first daemon's copy of a
      await setupOk(['snapshot', 'create', a, 'release-1', '--master'], { env });
      cli(['mirror', 'update', a, '--to', `peer://127.0.0.1:${p1.port}/b`, ...peerArgs()]);
      const rep = at('replica.vol');
      type Pulled = { top: string; transferId: string; mode: string; snapshots: number; upToDate: boolean; resumedTransfer: boolean };
      const pulled = JSON.parse(cli(['replicate', 'pull', rep, '--from', `peer://127.0.0.1:${p1.port}/b`, ...peerArgs(), '--json']).stdout) as Pulled;
      // reported as a local pull reports it: its transfer's id and mode, and the replica's snapshots
      expect(pulled).toMatchObject({ top: 'release-1', mode: 'full', upToDate: false, resumedTransfer: false, transferId: expect.stringMatching(/^[0-9a-f-]{36}$/) });
      expect(pulled.snapshots).toBe((await snapshots(rep)).length);
      expect(pulled.snapshots).toBeGreaterThan(0);
      expect(await hashOf(rep)).toBe(await hashOf(`${a}@release-1`));
      const again = JSON.parse(cli(['replicate', 'pull', rep, '--from', `peer://127.0.0.1:${p1.port}/b`, ...peerArgs(), '--json']).stdout) as Pulled;
      expect(again).toMatchObject({ top: 'release-1', mode: 'common', upToDate: true, transferId: '', snapshots: pulled.snapshots });
    } finally {
      await p1.stop();
      await p2.stop();
    }
  });
});
