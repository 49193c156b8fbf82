// A level N dump's base is the lower level dump whose snapshot is the newest: the order of
// the moments the dumps hold, not the order of the dates they were stamped with. Two dumps
// run at once (the concurrent model found it) stamp their dates when each has planned,
// which may be the other order than the order their snapshots were taken in. The base is
// that snapshot whatever it is called now: renamed on the source after its dump, or on the
// restored volume, the chain still restores (restore knows it by id and CP, as verify does).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { MemoryMedium } from '../../src/media/memory/memory-medium.js';
import { dumpVolume, planDump } from '../../src/stream/dump.js';
import { restoreStreams } from '../../src/stream/restore.js';
import { exportImage } from '../../src/volume/export.js';
import { importImage } from '../../src/volume/import.js';
import { Volume } from '../../src/volume/volume.js';
import { exportToBuffer, memorySource, mutate, randomImage, tempDir } from '../support/images.js';

const dir = tempDir('imgstream-dump-base-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const BS = 4096;
const BLOCKS = 256;
const opts = (level: number, catalog: Catalog, snapshot: string) => ({ level, snapshot, order: 'vbn', compression: { codec: 'none' as const }, threads: 0, catalog });

describe('the base of an incremental dump', () => {
  it('is the lower level dump of the newest snapshot, whatever order the dates were stamped in', async () => {
    const file = path.join(dir, 'v.vol');
    Volume.create(file, { size: BLOCKS * BS, blockSize: BS, maxSnapshots: 8 });
    const vol = Volume.open(file, { write: true });
    const catalog = new Catalog(path.join(dir, 'catalog.json'));
    const media = new MemoryMedium();
    try {
      const img = randomImage(BLOCKS, BS, 1);
      for (const [i, s] of ['a', 'b', 'c'].entries()) {
        mutate(img, BS, 30, i + 2);
        await importImage(vol, memorySource(img));
        vol.createSnapshot(s);
      }
      const l0 = await dumpVolume(vol, () => media.target(), opts(0, catalog, 'a'));
      const l1 = await dumpVolume(vol, () => media.target(), opts(1, catalog, 'b'));
      // as two dumps run at once may leave them: the level 0 (of the older snapshot) stamped later
      catalog.update((dumps) => dumps.map((d) => (d.id === l0.streamId ? { ...d, date: '2099-01-01T00:00:00.000Z' } : d)));
      const plan = planDump(vol, 2, vol.snapshot('c'), catalog);
      expect(plan.baseDump?.id, 'the level 1 of b, not the level 0 of a').toBe(l1.streamId);
      expect(plan.base?.name).toBe('b');
      // and the chain it makes restores exactly
      await dumpVolume(vol, () => media.target(), opts(2, catalog, 'c'));
      const copy = path.join(dir, 'copy.vol');
      await restoreStreams([1, 2, 3].map((n) => media.source(n)), copy);
      const restored = Volume.open(copy, { write: false });
      try {
        expect((await exportToBuffer((sink) => exportImage(restored, 'c', sink))).equals(img)).toBe(true);
      } finally {
        restored.close();
      }
    } finally {
      vol.close();
    }
  });

  it('is still the base when renamed on the source after its dump, or on the restored volume', async () => {
    const file = path.join(dir, 'r.vol');
    Volume.create(file, { size: BLOCKS * BS, blockSize: BS, maxSnapshots: 8 });
    const vol = Volume.open(file, { write: true });
    const catalog = new Catalog(path.join(dir, 'catalog.r.json'));
    const media = new MemoryMedium();
    const img = randomImage(BLOCKS, BS, 11);
    try {
      for (const [i, s] of ['mon', 'tue', 'wed'].entries()) {
        if (s === 'wed') vol.renameSnapshot('tue', 'tuesday'); // after the level 1 of tue
        mutate(img, BS, 30, i + 12);
        await importImage(vol, memorySource(img));
        vol.createSnapshot(s);
        await dumpVolume(vol, () => media.target(), opts(i, catalog, s));
      }
      expect(planDump(vol, 2, vol.snapshot('wed'), catalog).base?.name).toBe('tuesday');
    } finally {
      vol.close();
    }
    const exact = async (copy: string) => {
      const v = Volume.open(copy, { write: false });
      try {
        expect((await exportToBuffer((sink) => exportImage(v, 'wed', sink))).equals(img)).toBe(true);
      } finally {
        v.close();
      }
    };
    // the whole chain at once: the level 1 brings "tue", the level 2 names its base "tuesday"
    const whole = path.join(dir, 'r-whole.vol');
    await restoreStreams([1, 2, 3].map((n) => media.source(n)), whole);
    await exact(whole);
    // the level 2 onto a copy whose base was renamed there in the meantime
    const copy = path.join(dir, 'r-copy.vol');
    await restoreStreams([1, 2].map((n) => media.source(n)), copy);
    const c = Volume.open(copy, { write: true });
    try {
      c.renameSnapshot('tue', 'tuesday-copy');
    } finally {
      c.close();
    }
    await restoreStreams([media.source(3)], copy);
    await exact(copy);
  });
});
