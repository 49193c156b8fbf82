// A dump of a served volume plans from a view of the snapshot table, then pins what it
// reads. A snapshot deleted in between (retention, a mirror update dropping its previous
// snapshot: the concurrent model found it) is no longer retained: the dump plans again
// without it instead of failing with "no snapshot named" (exit 3). A base that went is
// refused by the new plan, as on an idle volume; a table that keeps changing ends in busy.
// Two dumps of a served volume started in the same second choose the same snapshot name
// from their views (CI found one failing with "already exists"): the later moves on.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { BusyError, NotFoundError } from '../../src/core/errors.js';
import { MemoryMedium } from '../../src/media/memory/memory-medium.js';
import { dumpVolume, type DumpServedAccess } from '../../src/stream/dump.js';
import { restoreStreams } from '../../src/stream/restore.js';
import { exportImage } from '../../src/volume/export.js';
import { importImage } from '../../src/volume/import.js';
import { Volume } from '../../src/volume/volume.js';
import { exportToBuffer, memorySource, mutate, randomImage, tempDir } from '../support/images.js';

const dir = tempDir('imgstream-dump-replan-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const BS = 4096;
const BLOCKS = 256;

/** A volume with snapshots a, b, c of three different disks; the disk as of c. */
async function volumeWithThree(name: string): Promise<{ vol: Volume; disk: Buffer }> {
  const file = path.join(dir, name);
  Volume.create(file, { size: BLOCKS * BS, blockSize: BS, maxSnapshots: 8 });
  const vol = Volume.open(file, { write: true });
  const img = randomImage(BLOCKS, BS, 1);
  for (const [i, s] of ['a', 'b', 'c'].entries()) {
    mutate(img, BS, 30, i + 2);
    await importImage(vol, memorySource(img));
    vol.createSnapshot(s);
  }
  return { vol, disk: img };
}

/** The server's side, played by the volume itself: `beforeHold` runs as if another command ran between the plan and the pin. */
function servedBy(vol: Volume, beforeHold: (attempt: number) => void): DumpServedAccess {
  let attempt = 0;
  return {
    takeSnapshot: async (name) => {
      vol.createSnapshot(name);
      return vol;
    },
    evaluate: async () => {
      throw new Error('not a dry run');
    },
    hold: async (snapshots) => {
      beforeHold(++attempt);
      return snapshots.every((s) => vol.snapshots().some((x) => x.id === s.id && x.name === s.name));
    },
    refresh: async () => vol,
    verify: async () => {},
    dropSnapshot: async (name) => void vol.deleteSnapshot(name),
  };
}

const opts = (level: number, catalog: Catalog) => ({ level, order: 'vbn', compression: { codec: 'none' as const }, threads: 0, catalog });

describe('a served dump whose snapshots change between its plan and its pins', () => {
  it('plans again without a snapshot deleted meanwhile, and restores exactly', async () => {
    const { vol, disk } = await volumeWithThree('gone.vol');
    const catalog = new Catalog(path.join(dir, 'gone.json'));
    const media = new MemoryMedium();
    try {
      const r = await dumpVolume(vol, () => media.target(), opts(0, catalog), undefined, servedBy(vol, (n) => n === 1 && void vol.deleteSnapshot('b')));
      expect(r.snapshots).not.toContain('b');
      expect(r.snapshots).toEqual(expect.arrayContaining(['a', 'c', r.top]));
      const copy = path.join(dir, 'gone-copy.vol');
      await restoreStreams([media.source(media.streams.length)], copy);
      const restored = Volume.open(copy, { write: false });
      try {
        expect(restored.snapshots().map((s) => s.name)).toEqual(['a', 'c', r.top]);
        expect((await exportToBuffer((sink) => exportImage(restored, r.top, sink))).equals(disk)).toBe(true);
      } finally {
        restored.close();
      }
    } finally {
      vol.close();
    }
  });

  it('refuses as on an idle volume when the base went meanwhile', async () => {
    const { vol } = await volumeWithThree('base.vol');
    const catalog = new Catalog(path.join(dir, 'base.json'));
    const media = new MemoryMedium();
    try {
      const l0 = await dumpVolume(vol, () => media.target(), { ...opts(0, catalog), snapshot: 'b' });
      expect(l0.top).toBe('b');
      const l1 = dumpVolume(vol, () => media.target(), opts(1, catalog), undefined, servedBy(vol, (n) => n === 1 && void vol.deleteSnapshot('b')));
      await expect(l1).rejects.toThrow(NotFoundError);
      await expect(l1).rejects.toThrow(/the base of this level 1 dump, snapshot "b" .* no longer exists/);
      expect(vol.snapshots().map((s) => s.name), 'the snapshot it took is deleted again').toEqual(['a', 'c']);
    } finally {
      vol.close();
    }
  });

  it('ends with busy when the snapshots keep changing', async () => {
    const { vol } = await volumeWithThree('churn.vol');
    const catalog = new Catalog(path.join(dir, 'churn.json'));
    const media = new MemoryMedium();
    let n = 0;
    try {
      // every attempt finds a and c swapped (renamed) since its plan
      const churn = (): void => {
        vol.renameSnapshot('a', 'x');
        vol.renameSnapshot('c', 'a');
        vol.renameSnapshot('x', 'c');
        n++;
      };
      const r = dumpVolume(vol, () => media.target(), opts(0, catalog), undefined, servedBy(vol, churn));
      await expect(r).rejects.toThrow(BusyError);
      await expect(r).rejects.toThrow(/the snapshots changed 5 times while the dump was planned/);
      expect(n).toBe(5);
    } finally {
      vol.close();
    }
  });

  it('names its snapshot anew when another dump took the same name after its view was read', async () => {
    const { vol, disk } = await volumeWithThree('same-second.vol');
    const catalog = new Catalog(path.join(dir, 'same-second.json'));
    const media = new MemoryMedium();
    const asked: string[] = [];
    try {
      const served: DumpServedAccess = {
        ...servedBy(vol, () => {}),
        takeSnapshot: async (name) => {
          asked.push(name);
          // the other dump's server request lands first, with the same name
          if (asked.length === 1) vol.createSnapshot(name);
          vol.createSnapshot(name);
          return vol;
        },
      };
      const r = await dumpVolume(vol, () => media.target(), opts(0, catalog), undefined, served);
      expect(asked).toHaveLength(2);
      expect(asked[0]).toMatch(/^dump-l0-\d{8}T\d{6}Z$/);
      expect(asked[1]).toMatch(/^dump-l0-\d{8}T\d{6}Z(-2)?$/); // -2 unless the second changed in between
      expect(asked[1]).not.toBe(asked[0]);
      expect(r.top).toBe(asked[1]);
      expect(vol.snapshots().map((s) => s.name), "the other dump's snapshot is left alone").toEqual(['a', 'b', 'c', asked[0], asked[1]]);
      const copy = path.join(dir, 'same-second-copy.vol');
      await restoreStreams([media.source(media.streams.length)], copy);
      const restored = Volume.open(copy, { write: false });
      try {
        expect((await exportToBuffer((sink) => exportImage(restored, r.top, sink))).equals(disk)).toBe(true);
      } finally {
        restored.close();
      }
    } finally {
      vol.close();
    }
  });
});
