// protect status --verify checks the destination's base volume on a worker thread: a peer
// daemon scrubbing a large base for one client keeps serving its other sessions (the
// shippers' pings and transfers) meanwhile, where the check used to hold its event loop
// for as long as it read every map node of every tree.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalProtectDestination } from '../../src/journal/destination.js';
import { verifyDestination } from '../../src/journal/verify-destination.js';
import { checkVolume, checkVolumeOffThread } from '../../src/volume/check.js';
import { Volume } from '../../src/volume/volume.js';
import { tempDir } from '../support/images.js';
import { modelSource, seedImage } from '../support/protect-model.js';

const root = tempDir('imgstream-verify-thread-');
process.env.IMGSTREAM_LOCK_DIR = path.join(root, 'locks');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('verify of a protection destination', () => {
  it('checks the base off the event loop, with the same report as a check on it', async () => {
    const dest = path.join(root, 'dest.cdp');
    const d = new LocalProtectDestination(dest);
    await d.open(modelSource(5), 3_600_000);
    await d.seed(seedImage(5));
    await d.close();
    const base = path.join(dest, 'base.vol');

    // turns of the event loop while the base is checked (no interval to read: the check is all there is)
    let turns = 0;
    let spinning = true;
    const spin = () => {
      turns++;
      if (spinning) setImmediate(spin);
    };
    setImmediate(spin);
    const v = await verifyDestination(dest);
    spinning = false;
    expect(v.base).toEqual({ ok: true, problems: [] });
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
});
