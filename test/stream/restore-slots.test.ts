// A replica with as many snapshot slots as its source, kept by restoring each level while
// the source deletes old snapshots (retention) and takes new ones, through the built CLI.
// The source never lacks a slot: it deletes before it takes. The replica's restore must
// do the same, dropping what the source deleted to make room for what the stream brings.
// It used to count its free slots before those drops and refuse (exit 8, volume full).
// The slots of the dropped snapshots are used only after a CP of their own, so a kill -9
// at any moment leaves the replica at its previous CP, or at that CP (the previous one
// less what the source deleted), or at the new one; and the restore run again finishes.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, cliJson, finished, sleep, type CliResult } from '../support/cli.js';
import { mutate, randomImage, rng, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { cliEnv, dump, exportShas, expectClean, ok, snapshotNames } from '../support/stream-cli.js';

const BS = 4096;
const root = tempDir('imgstream-restore-slots-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 60_000 };
const p = (name: string) => path.join(root, name);
const src = p('src.vol');
const replica = p('r.vol');
const atL1 = p('r-at-l1.vol');
/** Export hashes of every snapshot the source had, taken before it deleted any. */
let sha: Record<string, string> = {};

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  await setupOk(['volume', 'create', src, '--size', '1M', '--max-snapshots', '4'], { env });
  const img = randomImage(256, BS, 71);
  const snap = async (name: string, seed: number) => {
    mutate(img, BS, 12, seed);
    fs.writeFileSync(p('src.raw'), img);
    await setupOk(['volume', 'import', src, '--from', p('src.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', src, name, '-q'], { env });
  };
  await snap('s0', 1);
  dump(src, 0, 's0', p('l0'), env.IMGSTREAM_CATALOG, [], o);
  ok(['restore', '--from', p('l0'), '--to', replica, '-q'], o);
  await snap('a', 2);
  await snap('b', 3);
  await snap('s1', 4);
  dump(src, 1, 's1', p('l1'), env.IMGSTREAM_CATALOG, [], o);
  ok(['restore', '--from', p('l1'), '--to', replica, '-q'], o);
  fs.copyFileSync(replica, atL1);
  const early = await exportShas(src, ['s0', 'a', 'b', 's1'], o);
  // retention on the source: a and b go, c and s2 come; four slots in use throughout
  ok(['snapshot', 'delete', src, 'a', '-q'], o);
  ok(['snapshot', 'delete', src, 'b', '-q'], o);
  await snap('c', 5);
  await snap('s2', 6);
  dump(src, 2, 's2', p('l2'), env.IMGSTREAM_CATALOG, [], o);
  sha = { ...early, ...(await exportShas(src, ['c', 's2'], o)) };
}, 120_000);

/** The replica's snapshots, each exported and compared with the source's; returns their names. */
async function expectLikeSource(vol: string, what: string): Promise<string[]> {
  const names = await snapshotNames(vol, o);
  const got = await exportShas(vol, names, o);
  for (const n of names) expect(got[n], `${what}: snapshot ${n}`).toBe(sha[n]);
  await expectClean(vol, o);
  return names;
}

describe('restore onto a replica whose slots are all in use, after retention on the source', () => {
  it('drops the snapshots the source deleted and takes their slots for the new ones', async () => {
    fs.copyFileSync(atL1, replica);
    const r = cliJson<{ streams: Array<{ dropped: string[]; separateDropCp: boolean }> }>(['restore', '--from', p('l2'), '--to', replica], o);
    expect(r.streams).toHaveLength(1);
    expect(r.streams[0].dropped.sort()).toEqual(['a', 'b']);
    expect(r.streams[0].separateDropCp).toBe(true);
    expect((await expectLikeSource(replica, 'after l2')).sort()).toEqual(['c', 's0', 's1', 's2']);
    expect((await exportShas(replica, [null], o)).active).toBe(sha.s2);
  });

  it('killed -9 at random moments and at the CP steps: previous CP, the drops, or the new one; the rerun finishes', async () => {
    const random = rng(0x51075);
    const states = { previous: 0, dropped: 0, done: 0 };
    const want: Record<string, string[]> = { previous: ['a', 'b', 's0', 's1'], dropped: ['s0', 's1'], done: ['c', 's0', 's1', 's2'] };
    const kill = async (delayMs: number | null, crashAt?: string): Promise<CliResult> => {
      fs.copyFileSync(atL1, replica);
      const child = spawn(process.execPath, [CLI_BIN, 'restore', '--from', p('l2'), '--to', replica, '-q'], { env: cliEnv({ ...env, ...(crashAt ? { IMGSTREAM_CRASH_AT: crashAt } : {}) }), stdio: ['ignore', 'pipe', 'pipe'] });
      const done = finished(child, 60_000);
      if (delayMs !== null) {
        await sleep(delayMs);
        child.kill('SIGKILL');
      }
      return done;
    };
    const check = async (what: string, r: CliResult) => {
      fs.rmSync(env.IMGSTREAM_LOCK_DIR, { recursive: true, force: true }); // the killed process's lock files
      const names = (await expectLikeSource(replica, what)).sort();
      const state = Object.entries(want).find(([, w]) => w.join() === names.join())?.[0] as keyof typeof states | undefined;
      expect(state, `${what}: snapshots ${names.join(', ')} (${r.signal ?? r.code})`).toBeDefined();
      states[state!]++;
      const again = cliJson<{ streams: unknown[]; held: unknown[] }>(['restore', '--from', p('l2'), '--to', replica], o);
      expect(again.streams.length + again.held.length, what).toBe(1);
      expect((await expectLikeSource(replica, `${what}, then again`)).sort()).toEqual(want.done);
    };
    for (const [step, expected] of [['journal', 'previous'], ['root', 'dropped']] as const) {
      const r = await kill(null, step);
      expect(r.signal, `crash at ${step}: ${r.stderr}`).toBe('SIGKILL');
      const before = { ...states };
      await check(`crash at ${step}`, r);
      expect(states[expected], `crash at ${step}`).toBe(before[expected] + 1);
    }
    // a full run's length, then kills spread over it
    const t0 = performance.now();
    await kill(null);
    const ms = performance.now() - t0;
    for (let i = 0; i < 10; i++) {
      const delay = Math.floor(random() * ms);
      await check(`killed after ${delay} ms of ${Math.round(ms)}`, await kill(delay));
    }
    expect(states.previous, 'kills that left the previous CP').toBeGreaterThan(0);
  }, 300_000);
});
