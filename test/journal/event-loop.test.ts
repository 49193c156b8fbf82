// Long work at a protection destination lets a peer daemon's event loop turn, so it keeps
// serving its other sessions (the shippers' pings and transfers) meanwhile: protect status
// --verify checks the base volume on a worker thread (the check used to hold the loop for
// as long as it read every map node of every tree), and a fold of many intervals (--keep
// shortened, a shipper back after days away) yields between two intervals.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalProtectDestination } from '../../src/journal/destination.js';
import { verifyDestination } from '../../src/journal/verify-destination.js';
import { readState } from '../../src/journal/destination-state.js';
import { checkVolume, checkVolumeOffThread } from '../../src/volume/check.js';
import { Volume } from '../../src/volume/volume.js';
import { tempDir } from '../support/images.js';
import { modelSource, seedImage, shippedInterval } from '../support/protect-model.js';

const root = tempDir('imgstream-verify-thread-');
process.env.IMGSTREAM_LOCK_DIR = path.join(root, 'locks');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Counts the event loop's turns while `work` runs. */
async function turnsDuring<T>(work: () => Promise<T>): Promise<{ result: T; turns: number }> {
  let turns = 0;
  let spinning = true;
  const spin = () => {
    turns++;
    if (spinning) setImmediate(spin);
  };
  setImmediate(spin);
  try {
    return { result: await work(), turns };
  } finally {
    spinning = false;
  }
}

describe('long work at a protection destination', () => {
  it('checks the base off the event loop, with the same report as a check on it', async () => {
    const dest = path.join(root, 'dest.cdp');
    const d = new LocalProtectDestination(dest);
    await d.open(modelSource(5), 3_600_000);
    await d.seed(seedImage(5));
    await d.close();
    const base = path.join(dest, 'base.vol');

    // turns of the event loop while the base is checked (no interval to read: the check is all there is)
    const { result: v, turns } = await turnsDuring(() => verifyDestination(dest));
    expect(v.base).toEqual({ ok: true, problems: [], dataBlocks: v.base.dataBlocks, badBlocks: [] });
    expect(v.base.dataBlocks, 'and its data against base.sums').toBeGreaterThan(0);
    // a check on the event loop lets it turn only at the few awaits around it
    expect(turns).toBeGreaterThan(100);

    const view = Volume.openView(base);
    try {
      expect(await checkVolumeOffThread(base)).toEqual(checkVolume(view));
    } finally {
      view.close();
    }
    // the thread's errors are the errors a check here raises: code, message, hint
    await expect(checkVolumeOffThread(path.join(root, 'missing.vol'))).rejects.toMatchObject({ code: 'not-found', message: expect.stringContaining('missing.vol') });
  });

  it('folds many intervals turning the event loop between two of them', async () => {
    const dest = path.join(root, 'fold.cdp');
    const d = new LocalProtectDestination(dest);
    await d.open(modelSource(6), 10 * 365 * 86_400_000);
    await d.seed(seedImage(6));
    for (let seq = 1; seq <= 40; seq++) await d.append(shippedInterval(6, seq));
    await d.close();
    // --keep shortened to a second: 39 of the 40 intervals are folded when it opens
    const again = new LocalProtectDestination(dest);
    const { turns } = await turnsDuring(() => again.open(modelSource(6), 1000));
    await again.close();
    // (the window keeps a second back from its end: the last interval)
    expect(readState(dest)).toMatchObject({ baseSeq: 39, intervalSeq: 40, fold: null });
    expect(turns).toBeGreaterThanOrEqual(38);
  });
});
