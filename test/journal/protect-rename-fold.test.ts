// Snapshot renames folded into a protection destination's base: a rotation in one interval
// (d1 → d2, d0 → d1, then a new d0) and a swap through a third name give every base
// snapshot the name the source gives it, and a fold killed (-9) after recording its plan
// or halfway through it ends the same when it resumes. Before and after, each name
// restores the disk of the snapshot it names now.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalProtectDestination } from '../../src/journal/destination.js';
import type { SnapshotRename } from '../../src/journal/destination-api.js';
import { readState } from '../../src/journal/destination-state.js';
import { modelImages, modelSource, seedImage, shippedInterval } from '../support/protect-model.js';
import { DRIVER, protectDestFixture } from '../support/protect-dest.js';
import { cliJson } from '../support/cli.js';

const fx = protectDestFixture('imgstream-rename-fold-');
const SEED = 61;
const COUNT = 6;

/** What the source did in each interval: the renames first, then the snapshots taken at its end. */
const HISTORY: Record<number, { renames?: SnapshotRename[]; snapshots?: string[] }> = {
  1: { snapshots: ['d1'] },
  2: { snapshots: ['d0'] },
  3: { renames: [{ from: 'd1', to: 'd2' }, { from: 'd0', to: 'd1' }], snapshots: ['d0'] },
  4: { renames: [{ from: 'd2', to: 'x' }, { from: 'd1', to: 'd2' }, { from: 'x', to: 'd1' }] },
};
/** Each name now, and the interval whose disk it holds. */
const NOW: Record<string, number> = { d1: 1, d2: 2, d0: 3 };

async function build(dest: string): Promise<void> {
  const d = new LocalProtectDestination(dest);
  await d.open(modelSource(SEED), 3_600_000 * 24 * 365);
  await d.seed(seedImage(SEED));
  for (let seq = 1; seq <= COUNT; seq++) await d.append({ ...shippedInterval(SEED, seq), snapshots: HISTORY[seq]?.snapshots ?? [], ...(HISTORY[seq]?.renames ? { renames: HISTORY[seq].renames } : {}) });
  await d.close();
}

/** Opens the destination keeping 1 ms of history (a fold up to the interval before the newest), in a process of its own. */
function fold(dest: string, crashAt?: string) {
  return spawnSync(process.execPath, [DRIVER, dest, String(SEED), String(COUNT), '1'], { env: { ...process.env, ...fx.env, ...(crashAt ? { IMGSTREAM_CRASH_AT: crashAt } : {}) }, encoding: 'utf8', timeout: 30_000 });
}

function checkNames(dest: string, images: Buffer[]): void {
  for (const [name, seq] of Object.entries(NOW)) expect(fx.exportAsOf(dest, name).equals(images[seq]), `${name} is the disk of interval ${seq}`).toBe(true);
  const old = fx.cli(['volume', 'export', dest, '--as-of', 'x', '--to', fx.at('x.raw')]);
  expect(old.code, old.stderr).toBe(4);
  expect(old.stderr).toContain('the source renamed that snapshot to d1');
}

describe('snapshot renames folded into the base', () => {
  const images = modelImages(SEED, COUNT);

  it('give the base\'s snapshots the names the source gives them (rotation, swap)', async () => {
    const dest = fx.at('plain.cdp');
    await build(dest);
    checkNames(dest, images);
    const r = fold(dest);
    expect(r.status, r.stderr).toBe(0);
    expect(readState(dest).baseSeq).toBe(COUNT - 1);
    checkNames(dest, images);
    const snaps = cliJson(['snapshot', 'list', path.join(dest, 'base.vol'), '--json'], { env: fx.env }).snapshots as Array<{ name: string; created: string }>;
    expect(snaps.map((x) => x.name).sort()).toEqual(['d0', 'd1', 'd2']);
    // taken when the source took them (their interval's end), not when they were folded
    for (const x of snaps) expect(Date.parse(x.created), x.name).toBe(shippedInterval(SEED, NOW[x.name]).end);
  });

  for (const step of ['protect-fold-renaming', 'protect-fold-passing']) {
    it(`end the same after a kill -9 at ${step}, resumed`, async () => {
      const dest = fx.at(`${step}.cdp`);
      await build(dest);
      // each interval with renames stops the fold there once: killed, resumed, until it completes
      let kills = 0;
      for (;;) {
        const r = fold(dest, step === 'protect-fold-passing' ? `${step}:base.vol` : step);
        if (r.signal === null) {
          expect(r.status, r.stderr).toBe(0);
          break;
        }
        expect(r.signal).toBe('SIGKILL');
        expect(readState(dest).fold, 'the fold is left pending').not.toBeNull();
        if (++kills > 4) break;
      }
      expect(kills, 'the kills came where asked').toBeGreaterThanOrEqual(1);
      // without the fault, the resumed fold completes
      const last = fold(dest);
      expect(last.status, last.stderr).toBe(0);
      expect(readState(dest).fold).toBeNull();
      expect(readState(dest).baseSeq).toBe(COUNT - 1);
      checkNames(dest, images);
      expect(fs.readdirSync(path.join(dest, 'intervals'))).toEqual(['0000000006.ivl']);
    });
  }
});
