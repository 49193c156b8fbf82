// Two mirror updates of one relationship overlapping on a served volume (cron starting the
// next while the last one ends; the concurrent model found it): the second's prepare swaps
// the mark-on-allocate planes again, merging in what the first shipped, so the first's
// finish must not empty the plane the second is about to ship: the mirror would miss every
// block written between the two.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { finishSource, prepareSource } from '../../src/mirror/index.js';
import { PLANE_MOA } from '../../src/volume/layout.js';
import { Volume } from '../../src/volume/volume.js';
import { rng, tempDir } from '../support/images.js';

const dir = tempDir('imgstream-mirror-overlap-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const BS = 4096;

function write(vol: Volume, from: number, count: number, seed: number): void {
  const r = rng(seed);
  const b = Buffer.alloc(BS);
  for (let k = 0; k < count; k++) {
    for (let i = 0; i < BS; i += 4) b.writeUInt32LE((r() * 2 ** 32) >>> 0, i);
    vol.writeLogical(from + k, b);
  }
  vol.commit();
}

describe('overlapping updates of one mirror', () => {
  it("the first's finish leaves the plane the second ships", () => {
    const file = path.join(dir, 'v.vol');
    Volume.create(file, { size: 64 * BS, blockSize: BS, maxSnapshots: 8 });
    const vol = Volume.open(file, { write: true, mirror: true });
    try {
      const prepare = () => prepareSource(vol, { tag: 't', cascade: false, track: true, top: null, keepIds: [], replicate: false });
      write(vol, 0, 10, 1);
      const first = vol.snapshot(prepare());
      const firstSwaps = vol.rootRecord.moaSwaps;
      write(vol, 20, 5, 2); // between the two prepares: only the second ships these
      const second = vol.snapshot(prepare());
      const secondSwaps = vol.rootRecord.moaSwaps;
      const shipping = PLANE_MOA[vol.rootRecord.moaCurrent ^ 1];
      const marked = vol.countPlane(shipping);
      expect(marked).toBeGreaterThanOrEqual(15);
      finishSource(vol, { tag: 't', topId: first.id, cascade: false, moaSwaps: firstSwaps });
      expect(vol.countPlane(shipping), 'the plane the second update ships').toBe(marked);
      expect(vol.snapshots().map((s) => s.name)).toEqual([second.name]);
      finishSource(vol, { tag: 't', topId: second.id, cascade: false, moaSwaps: secondSwaps });
      expect(vol.countPlane(shipping)).toBe(0);
    } finally {
      vol.close();
    }
  });
});
