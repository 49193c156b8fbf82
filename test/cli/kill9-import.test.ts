// kill -9 of real imgstream processes while they write: an import (one CP at its end),
// a snapshot create and a snapshot delete, killed at pseudo-random moments. Afterwards
// the volume must check clean, no stale lock may block the next command, and the active
// file system must be exactly the old or exactly the new image (never a mix); a snapshot
// must either exist and export exactly, or not exist.
//
// Kill moments: half the runs are killed a random delay after spawn (0 up to past the
// run's normal duration, so some die while node starts, some during the work, some after
// the end); the other half a random delay after the volume lock appears (so the kill
// lands in the work itself, including the CP's writes and flushes). The durations are
// measured first and kept up to date run by run, since other tests load the machine.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { finished, runCliAsync, sha256, sleep, spawnCli, writeImage } from '../support/cli.js';
import { rng, tempDir } from '../support/images.js';
import { checkReportOf, imageSha, snapshotNamesOf } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 8192; // 32 MiB images on a 32 MiB disk
const root = tempDir('imgstream-cli-kill9-');
const lockDir = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: lockDir };
const vol = path.join(root, 'v.vol');
const imgPath = { A: path.join(root, 'A.img'), B: path.join(root, 'B.img') };
const hash = { A: '', B: '' };
type Which = keyof typeof hash;
const other = (w: Which): Which => (w === 'A' ? 'B' : 'A');
const random = rng(0x9e3779b9);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  hash.A = sha256(writeImage(imgPath.A, BLOCKS, BS, 101));
  hash.B = sha256(writeImage(imgPath.B, BLOCKS, BS, 102));
  expect(hash.A).not.toBe(hash.B);
  // room for the snapshot, the active image and a whole new image before its CP
  fs.mkdirSync(lockDir, { recursive: true }); // watched for the lock files
  await setupOk(['volume', 'create', vol, '--size', '32M', '--volume-size', '160M', '--max-snapshots', '64'], { env });
  await setupOk(['volume', 'import', vol, '--from', imgPath.A], { env });
  await setupOk(['snapshot', 'create', vol, 'base'], { env });
}, 60_000);

// lock files only: a run killed while creating one may leave its FILE.new-PID beside (the next lock removes it)
const lockHeld = () => fs.existsSync(lockDir) && fs.readdirSync(lockDir).some((n) => n.endsWith('.lock'));

interface KillPlan {
  after: 'spawn' | 'lock';
  delayMs: number;
}

type Durations = { total: number; work: number };

interface KillOutcome {
  /** The process died of the SIGKILL (false: it had finished before the kill). */
  killed: boolean;
  /** A lock file was left behind by the killed process. */
  staleLock: boolean;
  /** How long it ran: spawn to end, and lock to end (0 when no lock was seen). */
  ran: Durations;
}

/**
 * Runs `imgstream ...args` and SIGKILLs it as planned (plan null: lets it finish). Watches
 * the lock directory (inotify) to see the volume lock appear: a kill planned 0 ms after
 * the lock is sent from the watch callback itself, so it lands while the run holds the
 * volume.
 */
async function runKilled(args: string[], plan: KillPlan | null): Promise<KillOutcome> {
  expect(lockHeld(), 'a lock is held before the run starts').toBe(false);
  const t0 = performance.now();
  let lockedAt = -1;
  let killedAt = -1;
  let exited = false;
  let timer: NodeJS.Timeout | undefined;
  const kill = () => {
    if (exited || killedAt >= 0) return;
    killedAt = performance.now();
    child.kill('SIGKILL');
  };
  const later = (ms: number) => {
    if (ms <= 0) kill();
    else timer = setTimeout(kill, ms);
  };
  const watcher = fs.watch(lockDir, (_event, name) => {
    if (lockedAt >= 0 || !name?.endsWith('.lock') || !fs.existsSync(path.join(lockDir, name))) return;
    lockedAt = performance.now();
    if (plan?.after === 'lock') later(plan.delayMs);
  });
  const child = spawnCli(args, { env });
  const done = finished(child, 60_000).finally(() => {
    exited = true;
  });
  if (plan?.after === 'spawn') later(plan.delayMs);
  let r;
  try {
    r = await done;
  } finally {
    clearTimeout(timer);
    watcher.close();
  }
  const end = performance.now();
  const killed = r.signal === 'SIGKILL';
  if (!killed) expect(r.code, `not killed, so it must have succeeded: ${r.stderr}`).toBe(0);
  const stop = killed ? killedAt : end;
  return { killed, staleLock: lockHeld(), ran: { total: stop - t0, work: lockedAt < 0 ? 0 : stop - lockedAt } };
}

/**
 * How long a run takes now, kept up to date as the machine's load changes (other test
 * files run alongside): a run that finished tells its durations; a killed one only that
 * it would have taken longer than it ran.
 */
class DurationEstimate {
  constructor(public d: Durations) {}
  static async measure(runs: string[][]): Promise<DurationEstimate> {
    const seen: Durations[] = [];
    for (const args of runs) {
      const o = await runKilled(args, null);
      expect(o.killed).toBe(false);
      seen.push(o.ran);
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];
    return new DurationEstimate({ total: median(seen.map((x) => x.total)), work: median(seen.map((x) => x.work)) });
  }
  observe(o: KillOutcome): void {
    // a finished run pulls the estimate halfway to what it took; a killed one only pushes
    // it up (halfway) when it was still running past the estimate: the estimate follows
    // the load without chasing the slowest run
    const next = (est: number, ran: number) => (ran <= 0 ? est : o.killed ? (ran > est ? (est + ran) / 2 : est) : (est + ran) / 2);
    this.d = { total: next(this.d.total, o.ran.total), work: next(this.d.work, o.ran.work) };
  }
  /**
   * The kill plan of run i of n: alternating modes, delays stratified over [0, stretch *
   * duration] (a stretch above 1 lets some runs finish first: the "new" outcome).
   */
  plan(i: number, n: number, stretch: { spawn: number; lock: number }): KillPlan {
    const after = i % 2 === 0 ? 'spawn' : 'lock';
    const half = Math.ceil(n / 2);
    // the first run killed after the lock is killed the moment the lock appears
    const frac = i === 1 ? 0 : (Math.floor(i / 2) + random()) / half;
    return { after, delayMs: Math.round(frac * (after === 'spawn' ? stretch.spawn * this.d.total : stretch.lock * this.d.work)) };
  }
  toString(): string {
    return `${Math.round(this.d.total)} ms (work ${Math.round(this.d.work)} ms)`;
  }
}

/** The volume checks clean (read in this process, oracle.ts: as `volume check` reads it, through the same lock). */
async function expectClean(context: string): Promise<void> {
  const r = await checkReportOf(vol, env).catch((e: Error) => ({ ok: false, error: e.message }));
  expect(r.ok, `${context}: check blocked or failed: ${JSON.stringify(r).slice(0, 2000)}`).toBe(true);
}

const exportHash = (ref: string): Promise<string> => imageSha(ref, env);

async function snapshotNames(): Promise<string[]> {
  return snapshotNamesOf(vol, env);
}

let current: Which = 'A';
let deleteEstimate: DurationEstimate | undefined;

describe('kill -9 of real imgstream processes', () => {
  it('import: the active file system is exactly the old or the new image', async () => {
    // measure a normal import in both directions (and end where we started: A)
    const est = await DurationEstimate.measure([
      ['volume', 'import', vol, '--from', imgPath.B],
      ['volume', 'import', vol, '--from', imgPath.A],
    ]);
    expect(await exportHash(vol)).toBe(hash.A);

    const n = 10;
    const tally = { old: 0, new: 0, killed: 0, killedNew: 0, staleLocks: 0, toA: 0, toB: 0 };
    for (let i = 0; i < n; i++) {
      const next = other(current);
      const p = est.plan(i, n, { spawn: 1.5, lock: 2 });
      const ctx = `run ${i}: import ${current}->${next}, kill ${p.delayMs} ms after ${p.after}`;
      const k = await runKilled(['volume', 'import', vol, '--from', imgPath[next]], p);
      est.observe(k);
      if (k.killed) tally.killed++;
      if (k.staleLock) tally.staleLocks++;
      await expectClean(ctx); // also: the stale lock did not block it
      const h = await exportHash(vol);
      expect([hash[current], hash[next]], `${ctx}: active file system is neither image`).toContain(h);
      if (h === hash[next]) {
        tally.new++;
        if (k.killed) tally.killedNew++;
        if (next === 'A') tally.toA++;
        else tally.toB++;
        current = next;
      } else {
        expect(k.killed, `${ctx}: finished yet the old image remains`).toBe(true);
        tally.old++;
      }
    }
    console.log(`kill -9 import: duration now ${est}; ${JSON.stringify(tally)}`);
    expect(tally.old, 'no kill left the old image').toBeGreaterThanOrEqual(1);
    expect(tally.new, 'no run ended with the new image').toBeGreaterThanOrEqual(1);
    expect(tally.killed, 'too few runs were really killed').toBeGreaterThanOrEqual(n / 4);
    expect(tally.staleLocks, 'no kill left a stale lock to step over').toBeGreaterThanOrEqual(1);
    // the snapshot taken before all this is untouched
    expect(await exportHash(`${vol}@base`)).toBe(hash.A);
    // and a normal import (in this process: setup for the next test) still works and lands exactly
    await setupOk(['volume', 'import', vol, '--from', imgPath[other(current)]], { env });
    current = other(current);
    expect(await exportHash(vol)).toBe(hash[current]);
  }, 120_000);

  it('a live holder makes others fail with "busy"; its kill -9 mid-import leaves the old image', async () => {
    const next = other(current);
    const child = spawnCli(['volume', 'import', vol, '--from', '-'], { env, stdin: 'pipe' });
    let exited = false;
    const done = finished(child, 60_000).finally(() => {
      exited = true;
    });
    // more than one 8 MiB import chunk: the first is compared and written, then it waits for more
    child.stdin?.write(fs.readFileSync(imgPath[next]).subarray(0, 12 << 20));
    while (!exited && !lockHeld()) await sleep(5);
    await sleep(300);
    expect(exited, 'the import ended while its stdin was open').toBe(false);
    const busy = await runCliAsync(['volume', 'info', vol], { env });
    expect(busy.code, busy.stderr).toBe(7);
    expect(busy.stderr.trimEnd().split('\n')).toHaveLength(1);
    expect(busy.stderr).toMatch(/^imgstream: .*in use/);
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    expect(lockHeld(), 'the killed import left its lock').toBe(true);
    await expectClean('after killing a half-fed import');
    expect(await exportHash(vol)).toBe(hash[current]);
  }, 60_000);

  it('snapshot create: the snapshot exists and exports exactly, or does not exist', async () => {
    const est = await DurationEstimate.measure(['t0', 't1', 't2'].map((t) => ['snapshot', 'create', vol, t]));
    expect(await snapshotNames()).toEqual(expect.arrayContaining(['t0', 't1', 't2']));
    deleteEstimate = await DurationEstimate.measure(['t0', 't1', 't2'].map((t) => ['snapshot', 'delete', vol, t]));
    expect(await snapshotNames()).not.toContain('t0');
    const n = 6;
    const tally = { exists: 0, absent: 0, killed: 0, staleLocks: 0 };
    for (let i = 0; i < n; i++) {
      const name = `k${i}`;
      const p = est.plan(i, n, { spawn: 1.3, lock: 1.5 });
      const ctx = `run ${i}: snapshot create ${name}, kill ${p.delayMs} ms after ${p.after}`;
      const k = await runKilled(['snapshot', 'create', vol, name], p);
      est.observe(k);
      if (k.killed) tally.killed++;
      if (k.staleLock) tally.staleLocks++;
      await expectClean(ctx);
      const names = await snapshotNames();
      if (names.includes(name)) {
        tally.exists++;
        expect(await exportHash(`${vol}@${name}`), ctx).toBe(hash[current]);
      } else {
        expect(k.killed, `${ctx}: finished yet the snapshot is missing`).toBe(true);
        tally.absent++;
        // the name is free: a normal create of it (in this process) works (and gives the delete test its k0..k7)
        await setupOk(['snapshot', 'create', vol, name], { env });
      }
    }
    console.log(`kill -9 snapshot create: duration now ${est}; ${JSON.stringify(tally)}`);
    expect(tally.killed, 'too few runs were really killed').toBeGreaterThanOrEqual(n / 4);
    expect(tally.staleLocks, 'no kill landed while it held the volume').toBeGreaterThanOrEqual(1);
    expect(await exportHash(`${vol}@base`)).toBe(hash.A);
  }, 90_000);

  it('snapshot delete: the snapshot exists and exports exactly, or does not exist', async () => {
    const est = deleteEstimate;
    expect(est, 'the create test measured deletes').toBeDefined();
    if (!est) return;
    const n = 6;
    const tally = { exists: 0, absent: 0, killed: 0, staleLocks: 0 };
    for (let i = 0; i < n; i++) {
      const name = `k${i}`; // made by the previous test, holding the current image
      const p = est.plan(i, n, { spawn: 1.3, lock: 1.5 });
      const ctx = `run ${i}: snapshot delete ${name}, kill ${p.delayMs} ms after ${p.after}`;
      const k = await runKilled(['snapshot', 'delete', vol, name], p);
      est.observe(k);
      if (k.killed) tally.killed++;
      if (k.staleLock) tally.staleLocks++;
      await expectClean(ctx);
      const names = await snapshotNames();
      if (names.includes(name)) {
        expect(k.killed, `${ctx}: finished yet the snapshot is still there`).toBe(true);
        tally.exists++;
        expect(await exportHash(`${vol}@${name}`), ctx).toBe(hash[current]);
      } else tally.absent++;
    }
    console.log(`kill -9 snapshot delete: duration now ${est}; ${JSON.stringify(tally)}`);
    expect(tally.killed, 'too few runs were really killed').toBeGreaterThanOrEqual(n / 4);
    expect(tally.staleLocks, 'no kill landed while it held the volume').toBeGreaterThanOrEqual(1);
    // what is left is whole: the base snapshot, the active file system, a clean check
    expect(await snapshotNames()).toContain('base');
    expect(await exportHash(`${vol}@base`)).toBe(hash.A);
    expect(await exportHash(vol)).toBe(hash[current]);
    await expectClean('at the end');
  }, 90_000);
});
