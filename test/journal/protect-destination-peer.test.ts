// A protection destination on a peer daemon (peer://HOST:PORT/NAME): status and restores
// exact, kill -9 of the daemon and of the shipper resume; sessions and their timeouts.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PeerProtectDestination } from '../../src/journal/destination.js';
import { connectPeer } from '../../src/peer/client.js';
import { exportProtectedAsOf } from '../../src/journal/restore-as-of.js';
import { protectStatus } from '../../src/journal/protect-status.js';
import { peerExportAsOf } from '../../src/journal/peer-as-of.js';
import { fileSink } from '../../src/volume/image-io.js';
import { cliJson, cliOk, finished, nonZeroBlocks, sleep, stderrLines } from '../support/cli.js';
import { makeToken } from '../peer/support.js';
import { endOf, MODEL_BLOCK_SIZE, modelImages, modelSource, seedImage, shippedInterval } from '../support/protect-model.js';
import { DRIVER, iso, protectDestFixture, rng } from '../support/protect-dest.js';

const { root, env, at, cli, startDaemon, exportInProcess } = protectDestFixture('imgstream-protect-peer-');

describe('protection destination on a peer daemon', () => {
  it('ships to a peer daemon: status and restore exact, kill -9 of the daemon and of the shipper resume', async () => {
    const token = makeToken(root);
    const peerRoot = at('peer-root');
    fs.mkdirSync(peerRoot);
    const seed = 16;
    const count = 150;
    const model = modelImages(seed, count);
    let daemon = await startDaemon(peerRoot, token);
    const url = () => `peer://127.0.0.1:${daemon.port}/vm.cdp`;
    // a pause after each append in the rounds that kill: the kill lands mid-shipping
    const ship = (n: number, delay = 0) => spawn(process.execPath, [DRIVER, url(), String(seed), String(n), '6000', '5'], { env: { ...process.env, ...env, PROTECT_DRIVER_TOKEN: token, PROTECT_DRIVER_DELAY_MS: String(delay) }, stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      expect((await finished(ship(20), 30_000)).code).toBe(0);
      const st = cliJson(['protect', 'status', url(), '--token-file', token, '--plain', '--verify'], { env });
      expect(st.destination).toBe(url());
      expect(st.verified.intervals).toBe(st.intervals.count); // the daemon read every block
      expect(st.verified.base.ok).toBe(true);
      expect(st.damaged).toEqual([]);
      expect(st.window.end).toBe(iso(endOf(seed, 20)));
      expect(st.points.at(-1).seq).toBe(20);
      const r = rng(3);
      for (let round = 0; round < 3; round++) {
        // the receiving side killed while intervals arrive, then restarted on the same directory
        const shipper = ship(count, 15);
        const shipped = finished(shipper, 30_000);
        await sleep(150 + Math.floor(r() * 200));
        daemon.child.kill('SIGKILL');
        await daemon.done;
        const res = await shipped;
        expect(res.code, res.stderr).not.toBe(0);
        expect(stderrLines(res)).toEqual([expect.stringMatching(/^protect-driver: peer 127\.0\.0\.1:\d+: /)]);
        daemon = await startDaemon(peerRoot, token);
        // the shipper killed while the daemon receives: the daemon lets the destination go
        const again = ship(count, 15);
        const againDone = finished(again, 30_000);
        await sleep(100 + Math.floor(r() * 100));
        again.kill('SIGKILL');
        await againDone;
      }
      // the daemon may not have seen the killed shipper's connection end yet: busy (7) until it does
      let last = await finished(ship(count), 30_000);
      for (let i = 0; i < 20 && last.code === 7; i++) {
        await sleep(100);
        last = await finished(ship(count), 30_000);
      }
      expect(last.code, last.stderr).toBe(0);
      const dest = path.join(peerRoot, 'vm.cdp');
      const fin = cliJson(['protect', 'status', url(), '--token-file', token, '--plain', '--points'], { env });
      expect(fin.window.end).toBe(iso(endOf(seed, count)));
      for (const p of fin.points as Array<{ seq: number; time: string }>) expect((await exportInProcess(dest, p.time)).equals(model[p.seq]), `point ${p.seq}`).toBe(true);
      // an export writes the non-zero blocks only (through a daemon, all that crosses the network; it sent 8 MiB pieces)
      {
        const last = (fin.points as Array<{ seq: number; time: string }>).at(-1)!;
        let written = 0;
        await exportProtectedAsOf(dest, last.time, () => ({ write: async (d: Buffer) => void (written += d.length), skip: () => {}, finish: async () => {}, discard: () => {} }));
        expect(written).toBe(nonZeroBlocks(model[last.seq], MODEL_BLOCK_SIZE) * MODEL_BLOCK_SIZE);
      }
      // exports through the daemon while it folds another shipper's intervals into the same base
      {
        const busy = `peer://127.0.0.1:${daemon.port}/busy.cdp`;
        const shipper = spawn(process.execPath, [DRIVER, busy, '19', '150', '40000', '4'], { env: { ...process.env, ...env, PROTECT_DRIVER_TOKEN: token, PROTECT_DRIVER_DELAY_MS: '8' }, stdio: ['ignore', 'pipe', 'pipe'] });
        const shipped = finished(shipper, 60_000);
        let running = true;
        void shipped.then(() => (running = false));
        const busyModel = modelImages(19, 150);
        let exported = 0;
        try {
          while (running) {
            if (!fs.existsSync(path.join(peerRoot, 'busy.cdp', 'protect.json')) || !protectStatus(path.join(peerRoot, 'busy.cdp')).window) {
              await sleep(20);
              continue;
            }
            const t = protectStatus(path.join(peerRoot, 'busy.cdp')).window!.end;
            const out = at(`busy-peer-${exported}.raw`);
            const r = await peerExportAsOf(busy, t, { tokenFile: token, plain: true }, (size) => fileSink(out, { force: false, size }));
            expect(r.point.time).toBe(t);
            expect(fs.readFileSync(out).equals(busyModel[r.point.seq]), `busy.cdp as of ${t}`).toBe(true);
            fs.rmSync(out);
            exported++;
          }
        } catch (err) {
          shipper.kill('SIGKILL');
          throw err;
        }
        expect((await shipped).code).toBe(0);
        expect(exported).toBeGreaterThan(2);
        expect(protectStatus(path.join(peerRoot, 'busy.cdp')).base.seq).toBeGreaterThan(90);
      }
      // restore and export as of a time through the daemon
      const peerFlags = ['--token-file', token, '--plain'];
      const mid = fin.points[Math.floor(fin.points.length / 2)] as { seq: number; time: string };
      cliOk(['volume', 'export', url(), '--as-of', mid.time, '--to', at('peer.raw'), ...peerFlags], { env });
      expect(fs.readFileSync(at('peer.raw')).equals(model[mid.seq])).toBe(true);
      cliOk(['restore', '--to', at('peer.vol'), '--as-of', 'latest', '--from', url(), ...peerFlags], { env }); // the window's end: the last interval
      cliOk(['volume', 'export', at('peer.vol'), '--to', at('peer-vol.raw')], { env });
      expect(fs.readFileSync(at('peer-vol.raw')).equals(model[count])).toBe(true);
      const outside = cli(['restore', '--to', at('peer2.vol'), '--as-of', iso(endOf(seed, 0)), '--from', url(), ...peerFlags]);
      expect(outside.code).toBe(4);
      // named as the client named it, and the hint's command runs here as printed (with the peer flags)
      expect(stderrLines(outside)).toEqual([expect.stringContaining(`is outside the recovery window of ${url()}: ${fin.window.start} to ${fin.window.end} (list the recovery points with: imgstream protect status ${url()} --points, with the same --token-file and TLS flags)`)]);
      expect(fs.existsSync(at('peer2.vol'))).toBe(false);
    } finally {
      daemon.child.kill('SIGTERM');
      await daemon.done;
    }
  }, 60_000);

  it('peer sessions: a quiet one outlives the daemon\'s idle timeout, a failed transfer ends it and stores nothing', async () => {
    const token = makeToken(root, 'token2');
    const peerRoot = at('peer-idle');
    fs.mkdirSync(peerRoot);
    const daemon = await startDaemon(peerRoot, token, ['--idle-timeout', '1']);
    process.env.IMGSTREAM_PROTECT_PING_MS = '300';
    const d = new PeerProtectDestination(`peer://127.0.0.1:${daemon.port}/quiet.cdp`, { tokenFile: token, plain: true });
    try {
      // protocol versions: a shipper speaking 1 (before renames travelled) is taken, one the daemon does not speak is refused naming those it does
      for (const protocol of [5, 1]) {
        const ch = await connectPeer(`peer://127.0.0.1:${daemon.port}/`, { tokenFile: token, plain: true });
        try {
          await ch.send({ op: 'protect.ship', name: `v${protocol}.cdp`, protocol, source: { ...modelSource(17) }, keepMs: null });
          const answer = (await ch.receive())!.msg;
          if (protocol === 1) expect(answer).toMatchObject({ type: 'state' });
          else expect(answer).toEqual({ error: { code: 'invalid-input', message: 'protect.ship: protocol 5 is not spoken here (1, 2, 3, 4)', hint: 'run the same imgstream version on both sides' } });
        } finally {
          await ch.close();
        }
      }
      await d.open(modelSource(17), 3_600_000);
      await d.seed(seedImage(17));
      await sleep(2500); // no interval for 2.5 idle timeouts
      const st = await d.append(shippedInterval(17, 1));
      expect(st.intervalSeq).toBe(1);
      // a transfer whose blocks' source fails mid-way: refused here, nothing stored there, the session ends
      const broken = shippedInterval(17, 2);
      broken.blocks = (async function* () {
        yield { lbn: 0, data: Buffer.alloc(MODEL_BLOCK_SIZE, 1) };
        throw new Error('journal read failed');
      })();
      await expect(d.append(broken)).rejects.toThrow('journal read failed');
      await expect(d.append(shippedInterval(17, 2))).rejects.toThrow(/no session with the daemon/);
      // the daemon refuses an interval out of sequence, with its reason and code
      expect((await d.open(modelSource(17), 3_600_000)).intervalSeq).toBe(1);
      await expect(d.append(shippedInterval(17, 3))).rejects.toMatchObject({ code: 'invalid-input', message: expect.stringContaining('interval 3 does not follow interval 1') });
      expect((await d.open(modelSource(17), 3_600_000)).intervalSeq).toBe(1);
      expect((await d.append(shippedInterval(17, 2))).intervalSeq).toBe(2);
      await d.close();
      expect((await exportInProcess(path.join(peerRoot, 'quiet.cdp'), iso(endOf(17, 2)))).equals(modelImages(17, 2)[2])).toBe(true);
    } finally {
      delete process.env.IMGSTREAM_PROTECT_PING_MS;
      daemon.child.kill('SIGTERM');
      await daemon.done;
    }
  }, 30_000);
});
