// The protection destination (issue 14) through the real CLI: intervals shipped by a
// driver process (test/support/protect-driver.ts, the model's intervals through
// LocalProtectDestination), then restore --as-of / volume export --as-of compared byte for
// byte with the model's image at the recovery point the time names; retention folding
// exact and bounded; kill -9 of the shipping process at random moments and at each step
// of an append and a fold. Bad input and damage: protect-destination-bad.test.ts; a peer
// daemon's destination: protect-destination-peer.test.ts.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportProtectedAsOf } from '../../src/journal/restore-as-of.js';
import { protectStatus } from '../../src/journal/protect-status.js';
import { fileSink } from '../../src/volume/image-io.js';
import { allocatedBytes, cliJson, cliOk, finished, runCliAsync, sleep, stderrLines } from '../support/cli.js';
import { imageBytes } from '../support/oracle.js';
import { endOf, modelImages, pointAt, snapshotOf } from '../support/protect-model.js';
import { DRIVER, iso, protectDestFixture, rng } from '../support/protect-dest.js';
import { inProcessJson, inProcessOk } from '../support/in-process.js';

const { root, env, at, cli, drive, driveOk, exportAsOf, exportInProcess, storageBytes } = protectDestFixture('imgstream-protect-dest-');

describe('protection destination', () => {
  it('rebuilds the disk exactly as of 30+ random times in the window, as a raw image and as a volume', async () => {
    const dest = at('model.cdp');
    const seed = 11;
    const count = 40;
    driveOk(dest, seed, count, 3_600_000, 7);
    const model = modelImages(seed, count);
    const st = cliJson(['protect', 'status', dest, '--points'], { env });
    expect(st.window).toEqual({ start: iso(endOf(seed, 0)), end: iso(endOf(seed, count)) });
    expect(st.recoveryPoints).toBe(count + 1);
    expect(st.points.map((p: { time: string }) => p.time)).toEqual(Array.from({ length: count + 1 }, (_, i) => iso(endOf(seed, i))));
    expect(st.points.flatMap((p: { snapshots: string[] }) => p.snapshots)).toEqual(['snap7', 'snap14', 'snap21', 'snap28', 'snap35']);

    const r = rng(5);
    const lo = endOf(seed, 0);
    const hi = endOf(seed, count);
    const times = Array.from({ length: 30 }, () => lo + Math.floor(r() * (hi - lo + 1)));
    // the boundaries: exactly an interval's end is that point, one ms before is the previous
    times.push(endOf(seed, 17), endOf(seed, 17) - 1, lo, hi);
    const points = new Set<number>();
    // three exports at a time, in this process (the same call the command makes); the first as a real process
    for (let i = 0; i < times.length; i += 3) {
      await Promise.all(
        times.slice(i, i + 3).map(async (t, k) => {
          const p = pointAt(seed, count, t);
          points.add(p);
          let img: Buffer;
          if (i + k === 0) {
            const out = at(`model-${i + k}.raw`);
            const r = await runCliAsync(['volume', 'export', dest, '--as-of', iso(t), '--to', out], { env });
            expect(r.code, r.stderr).toBe(0);
            img = fs.readFileSync(out);
            fs.rmSync(out);
          } else img = await exportInProcess(dest, iso(t));
          expect(img.equals(model[p]), `as of ${iso(t)} (point ${p})`).toBe(true);
        }),
      );
    }
    expect(points.size).toBeGreaterThan(15);
    expect(pointAt(seed, count, endOf(seed, 17) - 1)).toBe(16);
    // a snapshot name names its recovery point; latest, the newest one
    expect(exportAsOf(dest, 'snap14').equals(model[14])).toBe(true);
    expect(exportAsOf(dest, 'latest').equals(model[count])).toBe(true);
    const latest = cliOk(['restore', '--to', at('latest.vol'), '--as-of', 'latest', '--from', dest], { env });
    expect(latest.stdout).toContain(`created as of ${iso(endOf(seed, count))}`);

    for (const [k, t] of [times[0], times[1], endOf(seed, 33)].entries()) {
      const vol = at(`restored-${k}.vol`);
      const out = cliOk(['restore', '--to', vol, '--as-of', iso(t), '--from', dest], { env });
      expect(out.stdout).toContain(`created as of ${iso(endOf(seed, pointAt(seed, count, t)))}`);
      expect((await imageBytes(vol, env)).equals(model[pointAt(seed, count, t)])).toBe(true);
      // a consistent volume (the copy of the base holds every block its planes name)
      expect((await inProcessOk(['volume', 'check', vol], { env })).stdout).toContain(`${vol}: clean`);
      // a copy of the base that stays sparse: the base's allocation plus the blocks written over it
      expect(allocatedBytes(vol)).toBeLessThanOrEqual(allocatedBytes(path.join(dest, 'base.vol')) + (1 << 20));
    }
    // nothing left behind by the restores (temporary volumes)
    expect(fs.readdirSync(root).filter((n) => n.includes('restoring'))).toEqual([]);
  }, 60_000);

  it('folds history older than --keep into the base: exact results, source snapshots on the base, storage bounded by the window', async () => {
    const dest = at('fold.cdp');
    const seed = 12;
    const count = 45;
    driveOk(dest, seed, count, 8000, 7);
    const model = modelImages(seed, count);
    const st = cliJson(['protect', 'status', dest], { env });
    // intervals ending more than 8 s before the newest are in the base
    const cutoff = endOf(seed, count) - 8000;
    let folded = 0;
    for (let seq = 1; seq <= count; seq++) if (endOf(seed, seq) < cutoff) folded = seq;
    expect(st.base.seq).toBe(folded);
    expect(st.window.start).toBe(iso(endOf(seed, folded)));
    expect(st.intervals.count).toBe(count - folded);
    expect(fs.readdirSync(path.join(dest, 'intervals')).length).toBe(count - folded);
    expect(st.base.snapshots).toEqual(['snap7', 'snap14', 'snap21', 'snap28', 'snap35'].filter((s) => Number(s.slice(4)) <= folded));
    for (const seq of [folded, folded + 1, Math.floor((folded + count) / 2), count]) {
      expect((await exportInProcess(dest, iso(Math.min(endOf(seed, seq) + 1, endOf(seed, count))))).equals(model[seq]), `point ${seq}`).toBe(true);
    }
    // before the window: refused, naming it
    const r = cli(['volume', 'export', dest, '--as-of', iso(endOf(seed, folded) - 1), '--to', at('never.raw')]);
    expect(r.code).toBe(4);
    expect(stderrLines(r)).toEqual([expect.stringContaining(`outside the recovery window of ${dest}: ${iso(endOf(seed, folded))} to ${iso(endOf(seed, count))}`)]);
    expect(fs.existsSync(at('never.raw'))).toBe(false);
    // the folded snapshots are real snapshots of the base, and of a volume restored from it
    const vol = at('fold-restored.vol');
    cliOk(['restore', '--to', vol, '--as-of', iso(endOf(seed, count)), '--from', dest], { env });
    expect((await inProcessOk(['volume', 'check', vol], { env })).stdout).toContain(`${vol}: clean`);
    for (const snap of st.base.snapshots as string[]) {
      expect((await imageBytes(`${vol}@${snap}`, env)).equals(model[Number(snap.slice(4))]), snap).toBe(true);
    }

    // a folded snapshot is still a recovery point by its name, as the source took it
    expect((await exportInProcess(dest, 'snap7')).equals(model[7])).toBe(true);

    // snapshot names the source takes again (rot0, rot1, rot0…): the base keeps the newest of each
    const rot = at('rotate.cdp');
    const r2 = drive(rot, seed, count, 8000, 7, { PROTECT_DRIVER_ROTATE: '2' });
    expect(r2.status, r2.stderr).toBe(0);
    const rotSt = await inProcessJson(['protect', 'status', rot], { env });
    expect(rotSt.base.seq).toBe(folded);
    for (const name of ['rot0', 'rot1']) {
      let newest = 0;
      for (let seq = 1; seq <= folded; seq++) if (snapshotOf(seq, { snapshotEvery: 7, rotate: 2 }) === name) newest = seq;
      expect((await imageBytes(`${path.join(rot, 'base.vol')}@${name}`, env)).equals(model[newest]), `${name} = point ${newest}`).toBe(true);
    }

    // storage: without snapshots pinning old blocks, 3x the writes cost no more storage
    const bounded = at('bounded.cdp');
    driveOk(bounded, 13, 30, 5000);
    const after30 = storageBytes(bounded);
    driveOk(bounded, 13, 120, 5000);
    const after120 = storageBytes(bounded);
    expect(after120).toBeLessThanOrEqual(after30 * 1.2);
    expect((await exportInProcess(bounded, iso(endOf(13, 120)))).equals(modelImages(13, 120)[120])).toBe(true);
  }, 60_000);

  it('survives kill -9 of the shipping process at random moments and at every step of an append and a fold', async () => {
    const dest = at('kill.cdp');
    const seed = 14;
    const count = 250;
    const keep = 6000;
    const model = modelImages(seed, count);
    const checkAll = async (label: string) => {
      const st = await inProcessJson(['protect', 'status', dest, '--points'], { env });
      if (!st.seeded) return 0;
      expect(st.shipper, label).toBeNull();
      for (const p of st.points as Array<{ seq: number; time: string }>) {
        expect((await exportInProcess(dest, p.time)).equals(model[p.seq]), `${label}: point ${p.seq}`).toBe(true);
      }
      // no temporary file survives the next open (checked after the driver's next run)
      return st.points.at(-1).seq as number;
    };
    // deterministic kills at each step
    const steps = ['protect-interval-written', 'protect-fold-started', 'protect-fold-sums', 'protect-fold-step', 'protect-fold-applied', 'protect-fold-recorded', 'apply:base.vol', 'journal:base.vol', 'snapshot-plane:base.vol'];
    let last = 0;
    for (const step of steps) {
      const r = drive(dest, seed, count, keep, 5, { IMGSTREAM_CRASH_AT: step });
      expect(r.signal, step).toBe('SIGKILL');
      const now = await checkAll(step);
      expect(now).toBeGreaterThanOrEqual(last);
      last = now;
    }
    // random moments (the journal's own kill tests add 22 more under a real client: protect-kill.test.ts)
    const r = rng(9);
    for (let round = 0; round < 6; round++) {
      const child = spawn(process.execPath, [DRIVER, dest, String(seed), String(count), String(keep), '5'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      const done = finished(child, 30_000);
      await sleep(120 + Math.floor(r() * 300));
      child.kill('SIGKILL');
      const res = await done;
      expect(res.stderr, `round ${round}`).toBe('');
      const now = await checkAll(`round ${round}`);
      expect(now).toBeGreaterThanOrEqual(last);
      last = now;
    }
    expect(last).toBeGreaterThan(0);
    // resumes where it stopped, to the end, every point exact, nothing temporary left
    driveOk(dest, seed, count, keep, 5);
    expect(await checkAll('final')).toBe(count);
    // the source's snapshots folded into the base, through every crash, hold their points
    const baseSnaps = (await inProcessJson(['protect', 'status', dest], { env })).base.snapshots as string[];
    expect(baseSnaps.length).toBeGreaterThan(10);
    for (const name of baseSnaps.filter((_, i) => i % 8 === 0)) {
      expect((await imageBytes(`${path.join(dest, 'base.vol')}@${name}`, env)).equals(model[Number(name.slice(4))]), name).toBe(true);
    }
    const names = [...fs.readdirSync(dest), ...fs.readdirSync(path.join(dest, 'intervals'))];
    expect(names.filter((n) => n.endsWith('.tmp') || n.includes('seeding'))).toEqual([]);
    // the base's checksums went through every crash with it: the whole disk matches them
    const verified = cliJson(['protect', 'status', dest, '--verify'], { env }).verified.base;
    expect(verified).toMatchObject({ ok: true, badBlocks: [] });
    expect(verified.dataBlocks).toBeGreaterThan(0);
  }, 120_000);

  it('restores exactly while a shipper appends and folds (a fold waits for the restore holding the base)', async () => {
    const dest = at('busy.cdp');
    const seed = 18;
    const count = 150;
    const model = modelImages(seed, count);
    driveOk(dest, seed, 5, 40_000, 4);
    const child = spawn(process.execPath, [DRIVER, dest, String(seed), String(count), '40000', '4'], { env: { ...process.env, ...env, PROTECT_DRIVER_DELAY_MS: '8' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const done = finished(child, 60_000);
    let checked = 0;
    let running = true;
    void done.then(() => (running = false));
    try {
      while (running && checked < 60) {
        const t = Date.parse(protectStatus(dest).window!.end);
        const out = at(`busy-${checked}.raw`);
        const r = await exportProtectedAsOf(dest, iso(t), (size) => fileSink(out, { force: false, size }));
        expect(r.point.time).toBe(iso(t));
        expect(fs.readFileSync(out).equals(model[r.point.seq]), `as of ${iso(t)}`).toBe(true);
        fs.rmSync(out);
        checked++;
      }
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    }
    const res = await done;
    expect(res.code, res.stderr).toBe(0);
    expect(checked).toBeGreaterThan(2);
    // the driver waited for none of them: folds that found the base busy ran at a later append
    expect(res.stdout.trim().split('\n').length).toBe(count - 5);
    const st = await inProcessJson(['protect', 'status', dest], { env });
    expect(st.window.end).toBe(iso(endOf(seed, count)));
    expect(st.base.seq).toBeGreaterThan(90);
    expect((await exportInProcess(dest, st.window.start)).equals(model[st.base.seq])).toBe(true);
  }, 60_000);
});
