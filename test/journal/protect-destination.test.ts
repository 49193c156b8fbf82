// The protection destination (issue 14) through the real CLI: intervals shipped by a
// driver process (test/support/protect-driver.ts, the model's intervals through
// LocalProtectDestination), then restore --as-of / volume export --as-of compared byte for
// byte with the model's image at the recovery point the time names; retention folding
// exact and bounded; kill -9 of the shipping process at random moments and at each step
// of an append and a fold; bad input.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalProtectDestination, PeerProtectDestination } from '../../src/journal/destination.js';
import { exportProtectedAsOf } from '../../src/journal/restore-as-of.js';
import { protectStatus } from '../../src/journal/protect-status.js';
import { peerExportAsOf } from '../../src/journal/peer-as-of.js';
import { fileSink } from '../../src/volume/image-io.js';
import { allocatedBytes, CLI_BIN, cliJson, cliOk, finished, listeningPort, nonZeroBlocks, REPO_ROOT, runCli, runCliAsync, sleep, stderrLines, writeImage } from '../support/cli.js';
import { makeToken } from '../peer/support.js';
import { tempDir } from '../support/images.js';
import { imageBytes } from '../support/oracle.js';
import { endOf, MODEL_BLOCKS, MODEL_BLOCK_SIZE, modelImages, modelSource, pointAt, seedImage, shippedInterval, snapshotOf } from '../support/protect-model.js';
import { setupOk } from '../support/in-process.js';
import { Volume } from '../../src/volume/volume.js';
import { PLANE_ACTIVE } from '../../src/volume/index.js';

const DRIVER = path.join(REPO_ROOT, 'dist', 'test', 'support', 'protect-driver.js');
const root = tempDir('imgstream-protect-dest-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const at = (name: string) => path.join(root, name);
const cli = (args: string[]) => runCli(args, { env, timeoutMs: 30_000 });
const iso = (ms: number) => new Date(ms).toISOString();

// this process takes destination locks too (a second shipper's refusal)
process.env.IMGSTREAM_LOCK_DIR = env.IMGSTREAM_LOCK_DIR;
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function drive(dest: string, seed: number, count: number, keepMs: number, snapshotEvery = 0, extraEnv: Record<string, string> = {}) {
  return spawnSync(process.execPath, [DRIVER, dest, String(seed), String(count), String(keepMs), String(snapshotEvery)], { env: { ...process.env, ...env, ...extraEnv }, encoding: 'utf8', timeout: 30_000 });
}

/** A peer daemon serving DIR (plain TCP, the test's token). */
async function startDaemon(dir: string, token: string, extra: string[] = []) {
  const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json', ...extra], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const done = finished(child, 120_000);
  return { port: await listeningPort(child, done), child, done };
}

function driveOk(dest: string, seed: number, count: number, keepMs: number, snapshotEvery = 0): void {
  const r = drive(dest, seed, count, keepMs, snapshotEvery);
  if (r.status !== 0) throw new Error(`driver exited ${r.status ?? r.signal}: ${r.stderr}`);
}

/** A seeded generator for the times the tests pick. */
function rng(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a * 1_103_515_245 + 12_345) % 2 ** 31;
    return a / 2 ** 31;
  };
}

/** The raw image `volume export DEST --as-of asOf` writes. */
function exportAsOf(dest: string, asOf: string): Buffer {
  const out = at(`as-of-${process.hrtime.bigint()}.raw`);
  cliOk(['volume', 'export', dest, '--as-of', asOf, '--to', out], { env });
  const img = fs.readFileSync(out);
  fs.rmSync(out);
  return img;
}

/** Same, in this process (many points per kill round). */
async function exportInProcess(dest: string, asOf: string): Promise<Buffer> {
  const out = at(`in-${process.hrtime.bigint()}.raw`);
  await exportProtectedAsOf(dest, asOf, (size) => fileSink(out, { force: false, size }));
  const img = fs.readFileSync(out);
  fs.rmSync(out);
  return img;
}

function storageBytes(dest: string): number {
  const st = cliJson(['protect', 'status', dest], { env });
  return st.base.bytes + st.intervals.bytes;
}

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
    // three exports at a time: one a real process, two in this process (the same call the command makes)
    for (let i = 0; i < times.length; i += 3) {
      await Promise.all(
        times.slice(i, i + 3).map(async (t, k) => {
          const p = pointAt(seed, count, t);
          points.add(p);
          let img: Buffer;
          if (k === 0) {
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
      expect(cliOk(['volume', 'check', vol], { env }).stdout).toContain(`${vol}: clean`);
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
      expect(exportAsOf(dest, iso(Math.min(endOf(seed, seq) + 1, endOf(seed, count)))).equals(model[seq]), `point ${seq}`).toBe(true);
    }
    // before the window: refused, naming it
    const r = cli(['volume', 'export', dest, '--as-of', iso(endOf(seed, folded) - 1), '--to', at('never.raw')]);
    expect(r.code).toBe(4);
    expect(stderrLines(r)).toEqual([expect.stringContaining(`outside the recovery window of ${dest}: ${iso(endOf(seed, folded))} to ${iso(endOf(seed, count))}`)]);
    expect(fs.existsSync(at('never.raw'))).toBe(false);
    // the folded snapshots are real snapshots of the base, and of a volume restored from it
    const vol = at('fold-restored.vol');
    cliOk(['restore', '--to', vol, '--as-of', iso(endOf(seed, count)), '--from', dest], { env });
    expect(cliOk(['volume', 'check', vol], { env }).stdout).toContain(`${vol}: clean`);
    for (const snap of st.base.snapshots as string[]) {
      expect((await imageBytes(`${vol}@${snap}`, env)).equals(model[Number(snap.slice(4))]), snap).toBe(true);
    }

    // a folded snapshot is still a recovery point by its name, as the source took it
    expect(exportAsOf(dest, 'snap7').equals(model[7])).toBe(true);

    // snapshot names the source takes again (rot0, rot1, rot0…): the base keeps the newest of each
    const rot = at('rotate.cdp');
    const r2 = drive(rot, seed, count, 8000, 7, { PROTECT_DRIVER_ROTATE: '2' });
    expect(r2.status, r2.stderr).toBe(0);
    const rotSt = cliJson(['protect', 'status', rot], { env });
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
    expect(exportAsOf(bounded, iso(endOf(13, 120))).equals(modelImages(13, 120)[120])).toBe(true);
  }, 60_000);

  it('survives kill -9 of the shipping process at random moments and at every step of an append and a fold', async () => {
    const dest = at('kill.cdp');
    const seed = 14;
    const count = 250;
    const keep = 6000;
    const model = modelImages(seed, count);
    const checkAll = async (label: string) => {
      const st = cliJson(['protect', 'status', dest, '--points'], { env });
      if (!st.seeded) return 0;
      expect(st.shipper, label).toBeNull();
      for (const p of st.points as Array<{ seq: number; time: string }>) {
        expect((await exportInProcess(dest, p.time)).equals(model[p.seq]), `${label}: point ${p.seq}`).toBe(true);
      }
      // no temporary file survives the next open (checked after the driver's next run)
      return st.points.at(-1).seq as number;
    };
    // deterministic kills at each step
    const steps = ['protect-interval-written', 'protect-fold-started', 'protect-fold-step', 'protect-fold-applied', 'protect-fold-recorded', 'apply:base.vol', 'journal:base.vol', 'snapshot-plane:base.vol'];
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
    const baseSnaps = cliJson(['protect', 'status', dest], { env }).base.snapshots as string[];
    expect(baseSnaps.length).toBeGreaterThan(10);
    for (const name of baseSnaps.filter((_, i) => i % 8 === 0)) {
      expect((await imageBytes(`${path.join(dest, 'base.vol')}@${name}`, env)).equals(model[Number(name.slice(4))]), name).toBe(true);
    }
    const names = [...fs.readdirSync(dest), ...fs.readdirSync(path.join(dest, 'intervals'))];
    expect(names.filter((n) => n.endsWith('.tmp') || n.includes('seeding'))).toEqual([]);
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
      while (running && checked < 2000) {
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
    const st = cliJson(['protect', 'status', dest], { env });
    expect(st.window.end).toBe(iso(endOf(seed, count)));
    expect(st.base.seq).toBeGreaterThan(90);
    expect((await exportInProcess(dest, st.window.start)).equals(model[st.base.seq])).toBe(true);
  }, 60_000);

  it('refuses bad input with one line and its exit code, changing nothing', async () => {
    const dest = at('bad.cdp');
    const seed = 15;
    driveOk(dest, seed, 10, 3_600_000);
    const window = `${iso(endOf(seed, 0))} to ${iso(endOf(seed, 10))}`;
    const expectError = (args: string[], code: number, text: string) => {
      const r = cli(args);
      expect(r.code, args.join(' ')).toBe(code);
      expect(stderrLines(r), args.join(' ')).toEqual([expect.stringContaining(text)]);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    };
    // a time outside the window, and something that is neither a time nor a snapshot
    expectError(['volume', 'export', dest, '--as-of', '2026-12-03T09:59:59.999Z', '--to', at('x.raw')], 4, `is outside the recovery window of ${dest}: ${window}`);
    expectError(['restore', '--to', at('x.vol'), '--as-of', '2026-12-04', '--from', dest], 4, `outside the recovery window of ${dest}: ${window}`);
    expectError(['restore', '--to', at('x.vol'), '--as-of', 'june7', '--from', dest], 4, 'neither a time nor a snapshot');
    expect(stderrLines(cli(['restore', '--to', at('x.vol'), '--as-of', 'june7', '--from', dest]))[0]).toMatch(/in the window .+ to .+, or latest for its end\)$/);
    // into a directory that does not exist: named, like every other restore
    expectError(['restore', '--to', at('nodir/x.vol'), '--as-of', iso(endOf(seed, 5)), '--from', dest], 3, `${at('nodir/x.vol')}: no such directory ${at('nodir')}`);
    expect(fs.existsSync(at('x.raw')) || fs.existsSync(at('x.vol')) || fs.existsSync(at('nodir'))).toBe(false);
    // restore onto an existing path
    writeImage(at('plain.raw'), MODEL_BLOCKS, MODEL_BLOCK_SIZE, 3);
    await setupOk(['volume', 'create', at('plain.vol'), '--size', String(MODEL_BLOCKS * MODEL_BLOCK_SIZE)], { env });
    expectError(['restore', '--to', at('plain.vol'), '--as-of', iso(endOf(seed, 5)), '--from', dest], 6, 'already exists');
    // a plain volume and a mirror are no protection destinations, for restore, export, status and a shipper
    cliOk(['mirror', 'update', at('plain.vol'), '--to', at('copy.mirror')], { env });
    for (const [file, what] of [[at('plain.vol'), 'is an imgstream volume'], [at('copy.mirror'), 'is a mirror destination volume']]) {
      expectError(['volume', 'export', file, '--as-of', iso(endOf(seed, 5)), '--to', at('x.raw')], 5, `${file}: ${what}, not a protection destination`);
      expectError(['protect', 'status', file], 5, `${file}: ${what}, not a protection destination`);
      if (file.endsWith('.vol')) expectError(['protect', 'status', file], 5, `(a destination is a directory, which imgstream protect creates; to protect this volume: imgstream serve nbd ${file} --journal, then imgstream protect ${file} --to DIR)`);
      expectError(['restore', '--to', at('x.vol'), '--as-of', iso(endOf(seed, 5)), '--from', file], 5, `${file}: ${what}, not a protection destination`);
      await expect(new LocalProtectDestination(file).open(modelSource(seed), 1000)).rejects.toThrow(`${file}: ${what}, not a protection destination`);
    }
    // a protection destination is no volume to restore, import or snapshot into
    cliOk(['dump', at('plain.vol'), '--level', '0', '--to', at('plain.l0')], { env });
    expectError(['restore', '--from', at('plain.l0'), '--to', dest], 5, `${dest}: is a protection destination, not a volume`);
    expectError(['snapshot', 'create', dest, 'x'], 5, `${dest}: is a protection destination, not a volume`);
    // protect names its source as every command does: missing, a directory, a destination, not a volume
    expectError(['protect', at('missing.vol'), '--to', at('never.cdp')], 3, `${at('missing.vol')}: no such volume`);
    fs.mkdirSync(at('empty-dir'));
    expectError(['protect', at('empty-dir'), '--to', at('never.cdp')], 5, `${at('empty-dir')}: is a directory, not a volume`);
    expectError(['protect', dest, '--to', at('never.cdp')], 5, `${dest}: is a protection destination, not a volume`);
    expectError(['protect', at('plain.l0'), '--to', at('never.cdp')], 5, `${at('plain.l0')}: not an imgstream volume`);
    expect(fs.existsSync(at('never.cdp'))).toBe(false);
    // one shipper at a time: the second is refused as busy
    const holder = new LocalProtectDestination(dest);
    await holder.open(modelSource(seed), 3_600_000);
    const second = drive(dest, seed, 12, 3_600_000);
    await holder.close();
    expect(second.status).toBe(7);
    expect(second.stderr).toContain('protection destination is in use by imgstream process');
    // another volume's destination is refused by a shipper
    await expect(new LocalProtectDestination(dest).open(modelSource(99), 1000)).rejects.toThrow(/protects volume 0000000f/);
    // a directory without protect.json
    fs.mkdirSync(at('empty.cdp'));
    expectError(['protect', 'status', at('empty.cdp')], 3, 'not a protection destination (no protect.json)');
    const noState = at('nostate.cdp');
    fs.cpSync(dest, noState, { recursive: true });
    fs.rmSync(path.join(noState, 'protect.json'));
    // it lost its state file, not its data: damage (9), for export, status and --verify alike, never "not a destination"
    expectError(['volume', 'export', noState, '--as-of', iso(endOf(seed, 5)), '--to', at('x.raw')], 9, `${noState}: protect.json is missing, but the directory holds a protection destination's base.vol`);
    expectError(['protect', 'status', noState, '--verify'], 9, `${noState}: protect.json is missing`);
    // a shipper does not start over on top of it: refused, nothing changed
    const before = fs.readdirSync(path.join(noState, 'intervals')).length;
    const restart = drive(noState, seed, 12, 3_600_000);
    expect(restart.status).toBe(9);
    expect(restart.stderr).toContain(`${noState}: protect.json is missing, but the directory holds a protection destination's base.vol`);
    expect(fs.readdirSync(path.join(noState, 'intervals')).length).toBe(before);
    expect(fs.existsSync(path.join(noState, 'protect.json'))).toBe(false);
    // a corrupt interval file (one data byte) and a truncated one: named, exit 9; earlier points still restore
    const ivl = (d: string, seq: number) => path.join(d, 'intervals', `${String(seq).padStart(10, '0')}.ivl`);
    const bad = at('corrupt.cdp');
    fs.cpSync(dest, bad, { recursive: true });
    const fd = fs.openSync(ivl(bad, 6), 'r+');
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, 700);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, 700);
    fs.closeSync(fd);
    const size = fs.statSync(ivl(bad, 8)).size;
    fs.truncateSync(ivl(bad, 8), size - 10);
    const model = modelImages(seed, 10);
    expect(exportAsOf(bad, iso(endOf(seed, 5))).equals(model[5])).toBe(true);
    // interval 6's damaged block is only read when no later interval holds that LBN: ask at 6
    expectError(['volume', 'export', bad, '--as-of', iso(endOf(seed, 6)), '--to', at('x.raw')], 9, `${ivl(bad, 6)}: damaged interval file (block`);
    expectError(['restore', '--to', at('x.vol'), '--as-of', iso(endOf(seed, 9)), '--from', bad], 9, `${ivl(bad, 8)}: damaged interval file (no trailer`);
    const st = cliJson(['protect', 'status', bad], { env });
    expect(st.damaged).toEqual([expect.stringContaining(`${ivl(bad, 8)}: damaged interval file (no trailer`)]);
    expect(st.recoveryPoints).toBe(11);
    // status reads headers only; --verify reads every block: interval 6's damaged data block
    // too, named with its LBN, on its point as well (exit 9, one line, the status in details)
    const verified = cli(['protect', 'status', bad, '--verify', '--json']);
    expect(verified.code, verified.stderr).toBe(9);
    expect(stderrLines(verified)).toEqual([expect.stringContaining(`${bad}: --verify found 2 damaged files: ${ivl(bad, 6)}: damaged interval file (block `)]);
    const vst = JSON.parse(verified.stdout).error.details;
    expect(vst.damaged).toEqual([expect.stringMatching(/0000000006\.ivl: damaged interval file \(block \d+ checksum mismatch\)$/), expect.stringContaining(`${ivl(bad, 8)}: damaged interval file (no trailer`)]);
    expect(vst.points.filter((p: { damaged?: string }) => p.damaged).map((p: { seq: number }) => p.seq)).toEqual([6, 8]);
    expect(vst.verified).toMatchObject({ intervals: 8, folded: 0, base: { ok: true, problems: [] } });
    const text = cli(['protect', 'status', bad, '--verify']);
    expect(text.code).toBe(9);
    expect(text.stdout).toContain(`DAMAGED: ${ivl(bad, 6)}: damaged interval file (block `);
    expect(text.stdout).toMatch(/verified: 8 intervals read whole \(\d+ blocks of data, .+\), base volume checks clean/);
    // the intact destination: every block read, exit 0; its block count is every data block held
    const clean = cliJson(['protect', 'status', dest, '--verify'], { env });
    expect(clean.damaged).toEqual([]);
    const dataBlocks = protectStatus(dest).points.reduce((n, p) => n + p.blocks, 0);
    expect(clean.verified).toMatchObject({ intervals: 10, folded: 0, base: { ok: true, problems: [] } });
    expect(clean.verified.blocks).toBeGreaterThan(0);
    expect(clean.verified.blocks).toBeLessThanOrEqual(dataBlocks); // blocks that read as zeros carry no data
    // more damage --verify and restores must name (each on a copy of the intact destination):
    const copyOf = (name: string) => {
      const d = at(name);
      fs.cpSync(dest, d, { recursive: true });
      return d;
    };
    const editState = (d: string, edit: (st: Record<string, unknown>) => void) => {
      const st = JSON.parse(fs.readFileSync(path.join(d, 'protect.json'), 'utf8'));
      edit(st);
      fs.writeFileSync(path.join(d, 'protect.json'), JSON.stringify(st));
    };
    // an interval a fold under way still has to apply (outside the window now): no point can be rebuilt
    const folding = copyOf('folding.cdp');
    editState(folding, (st) => (st.fold = { to: 4, end: endOf(seed, 4) }));
    const fb = fs.readFileSync(ivl(folding, 2));
    fb[fb.length - 1000] ^= 0xff; // in the index
    fs.writeFileSync(ivl(folding, 2), fb);
    const fv = cli(['protect', 'status', folding, '--verify']);
    expect(fv.code, fv.stderr).toBe(9);
    expect(stderrLines(fv)).toEqual([expect.stringMatching(new RegExp(`0000000002\\.ivl: damaged interval file .*no recovery point can be rebuilt: move ${folding.replace(/[.]/g, '\\.')} aside and protect to a new destination`))]);
    // a later damaged interval leaves the points before it: the hint names the last one
    const later = copyOf('later.cdp');
    fs.truncateSync(ivl(later, 9), 100);
    expect(stderrLines(cli(['protect', 'status', later, '--verify']))).toEqual([expect.stringContaining(`recovery points up to ${iso(endOf(seed, 8))} can still be rebuilt`)]);
    // an interval file copied over another's name: named, never taken for that interval's points
    const misplaced = copyOf('misplaced.cdp');
    fs.copyFileSync(ivl(misplaced, 7), ivl(misplaced, 6));
    expect(cliJson(['protect', 'status', misplaced], { env }).damaged).toEqual([`${ivl(misplaced, 6)}: damaged interval file (it holds interval 7, not 6)`]);
    expectError(['volume', 'export', misplaced, '--as-of', 'latest', '--to', at('x.raw')], 9, `${ivl(misplaced, 6)}: damaged interval file (it holds interval 7, not 6)`);
    // a missing interval file is damage (9) for a restore too; a directory in its place is named, not an internal error
    const missing = copyOf('missing.cdp');
    fs.rmSync(ivl(missing, 5));
    expectError(['restore', '--to', at('x.vol'), '--as-of', 'latest', '--from', missing], 9, `${ivl(missing, 5)}: missing interval file (interval 5 of 10)`);
    fs.mkdirSync(ivl(missing, 5));
    expectError(['protect', 'status', missing, '--verify'], 9, `${ivl(missing, 5)}: damaged interval file (not a file)`);
    // a seeded destination without its base: damage, never "create a volume"
    const noBase = copyOf('nobase.cdp');
    fs.rmSync(path.join(noBase, 'base.vol'));
    expect(cliJson(['protect', 'status', noBase], { env }).damaged).toEqual([`${path.join(noBase, 'base.vol')}: missing: the destination's base volume is gone`]);
    expectError(['restore', '--to', at('x.vol'), '--as-of', 'latest', '--from', noBase], 9, `${path.join(noBase, 'base.vol')}: missing: the destination's base volume is gone`);
    expectError(['protect', 'status', noBase, '--verify'], 9, 'no recovery point can be rebuilt');
    // not seeded yet: nothing to verify (exit 0), nothing to restore (3, saying so)
    const unseeded = copyOf('unseeded.cdp');
    fs.rmSync(path.join(unseeded, 'base.vol'));
    fs.rmSync(path.join(unseeded, 'intervals'), { recursive: true });
    editState(unseeded, (st) => Object.assign(st, { seeded: false, intervalSeq: 0, baseSeq: 0 }));
    const uv = cli(['protect', 'status', unseeded, '--verify']);
    expect(uv.code, uv.stderr).toBe(0);
    expect(uv.stdout).toContain('verified: nothing to read (not seeded yet)');
    expectError(['volume', 'export', unseeded, '--as-of', 'latest', '--to', at('x.raw')], 3, `${unseeded}: holds no recovery point yet (the first transfer has not completed)`);
    // a base whose active plane lost a block: its structure check names it
    const badBase = at('bad-base.cdp');
    fs.cpSync(dest, badBase, { recursive: true });
    const baseFile = path.join(badBase, 'base.vol');
    const view = Volume.openView(baseFile);
    const planeAt = view.layout.planeBlock(PLANE_ACTIVE, 0) * view.blockSize;
    view.close();
    const vol = fs.readFileSync(baseFile);
    vol.fill(0, planeAt, planeAt + MODEL_BLOCK_SIZE);
    fs.writeFileSync(baseFile, vol);
    const based = cli(['protect', 'status', badBase, '--verify']);
    expect(based.code).toBe(9);
    expect(stderrLines(based)).toEqual([expect.stringContaining(`${baseFile}: the base volume's check found`)]);
    // a base whose logical map points outside it: a restore names base.vol (damage, 9)
    const badMap = at('bad-map.cdp');
    fs.cpSync(dest, badMap, { recursive: true });
    const mapFile = path.join(badMap, 'base.vol');
    const mv = Volume.openView(mapFile);
    const rootAt = mv.layout.vbnOffset(mv.rootRecord.mapRoot);
    const outside = mv.nblocks + 1000;
    mv.close();
    const mapBytes = fs.readFileSync(mapFile);
    for (let slot = 0; slot < MODEL_BLOCK_SIZE / 8; slot++) if (mapBytes.readUInt32LE(rootAt + slot * 8) !== 0) mapBytes.writeUInt32LE(outside, rootAt + slot * 8);
    fs.writeFileSync(mapFile, mapBytes);
    expectError(['restore', '--to', at('x.vol'), '--as-of', 'latest', '--from', badMap], 9, `${mapFile} (the destination's base volume): logical map node at VBN `);
    expectError(['volume', 'export', badMap, '--as-of', 'latest', '--to', at('x.raw')], 9, `${mapFile}: logical map node at VBN `);
    expect(fs.existsSync(at('x.raw')) || fs.existsSync(at('x.vol'))).toBe(false);
    expect(fs.readdirSync(root).filter((n) => n.includes('restoring') || n.includes('imgstream-'))).toEqual([]);
  }, 60_000);

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
      expect(stderrLines(outside)).toEqual([expect.stringContaining(`is outside the recovery window of ${url()}: ${fin.window.start} to ${fin.window.end} (list the recovery points with: imgstream protect status ${url()} --points (with the same --token-file and TLS flags))`)]);
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
