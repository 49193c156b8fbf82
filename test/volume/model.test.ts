// Model-based test of the volume engine: random sequences of imports (random change
// patterns; from a stream, or from a file compared by two threads), snapshot creates (regular and shadow), deletes and renames, at two block
// sizes, checked after every step against a plain model (snapshot name -> image bytes):
// every live snapshot and the active disk export byte-identical, and check is clean.
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { importImage } from '../../src/volume/import.js';
import { fileSource } from '../../src/volume/image-io.js';
import { exportImage } from '../../src/volume/export.js';
import { checkVolume } from '../../src/volume/check.js';
import { storageImageOf } from '../../src/volume/storage-image-of.js';
import { PLANE_MOA } from '../../src/volume/layout.js';
import { exportToBuffer, memorySource, mutate, randomImage, tempDir } from '../support/images.js';

const dir = tempDir('imgstream-model-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Op =
  | { kind: 'import'; changes: number; seed: number; zeroTail: boolean; viaFile: boolean }
  | { kind: 'snapshot'; shadow: boolean }
  | { kind: 'delete'; pick: number }
  | { kind: 'rename'; pick: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('import' as const), changes: fc.integer({ min: 0, max: 200 }), seed: fc.integer({ min: 1, max: 1e9 }), zeroTail: fc.boolean(), viaFile: fc.boolean() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), shadow: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('delete' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('rename' as const), pick: fc.nat() }) },
);

let counter = 0;

async function runSequence(bs: number, blocks: number, ops: Op[]): Promise<void> {
  const file = path.join(dir, `m${counter++}.vol`);
  Volume.create(file, { size: blocks * bs, blockSize: bs, maxSnapshots: 8, volumeSize: blocks * bs * 4 });
  const model = new Map<string, { image: Buffer; shadow: boolean }>();
  let active = Buffer.alloc(blocks * bs);
  let img = randomImage(blocks, bs, 99);
  let n = 0;
  const vol = Volume.open(file, { write: true });
  try {
    for (const op of ops) {
      if (op.kind === 'import') {
        mutate(img, bs, op.changes, op.seed);
        // sometimes import a shorter image: the rest of the disk must read as zeros
        const cut = op.zeroTail ? Math.floor(blocks / 2) * bs + 100 : img.length;
        const src = img.subarray(0, cut);
        if (op.viaFile) {
          // a file is read at positions, and with chunks this small a compare thread
          // takes part (8 or more chunks): both must give what the stream gives
          const imageFile = path.join(dir, `i${counter++}.raw`);
          fs.writeFileSync(imageFile, src);
          await importImage(vol, fileSource(imageFile), undefined, { chunkBytes: 5 * bs, threads: 1 });
          fs.rmSync(imageFile);
        } else await importImage(vol, memorySource(src, 7000));
        active = Buffer.alloc(blocks * bs);
        src.copy(active);
        img = Buffer.from(active);
      } else if (op.kind === 'snapshot') {
        if (model.size >= 8) continue;
        const name = `s${n++}`;
        vol.createSnapshot(name, { shadow: op.shadow });
        model.set(name, { image: Buffer.from(active), shadow: op.shadow });
      } else {
        const names = [...model.keys()];
        if (names.length === 0) continue;
        const name = names[op.pick % names.length];
        if (op.kind === 'delete') {
          vol.deleteSnapshot(name);
          model.delete(name);
        } else {
          const to = `r${n++}`;
          vol.renameSnapshot(name, to);
          model.set(to, model.get(name)!);
          model.delete(name);
        }
      }
      // the model, after every step
      expect((await exportToBuffer((s) => exportImage(vol, undefined, s))).equals(active), 'active disk').toBe(true);
      for (const [name, m] of model) {
        const entry = vol.snapshot(name);
        if (m.shadow && entry.reusedBlocks > 0) continue; // reused shadows are no longer images
        expect((await exportToBuffer((s) => exportImage(vol, name, s))).equals(m.image), `snapshot ${name}`).toBe(true);
      }
      const rep = checkVolume(vol);
      expect([...rep.problems, ...rep.trees.flatMap((t) => t.problems)]).toEqual([]);
    }
  } finally {
    vol.close();
  }
}

describe('volume engine against a model', () => {
  for (const bs of [4096, 16384]) {
    it(`random operation sequences keep every snapshot exact (block size ${bs})`, async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(opArb, { minLength: 3, maxLength: 14 }), (ops) => runSequence(bs, 300, ops)),
        { numRuns: 12 },
      );
    });
  }

  it('mark-on-allocate planes record every allocation and swap roles', async () => {
    const bs = 4096;
    const file = path.join(dir, 'moa.vol');
    Volume.create(file, { size: 256 * bs, blockSize: bs, maxSnapshots: 4 });
    const vol = Volume.open(file, { write: true });
    try {
      const img = randomImage(256, bs, 5, 0);
      await importImage(vol, memorySource(img));
      // everything allocated so far is in moa.0 and in active: moa.0 == active
      expect(storageImageOf(vol, 'active').blocks).toBe(vol.countPlane(PLANE_MOA[0]));
      expect(storageImageOf(vol, 'moa.0 & active').blocks).toBe(vol.countPlane(PLANE_MOA[0]));
      expect(vol.countPlane(PLANE_MOA[1])).toBe(0);
      vol.createSnapshot('t0');
      const { shipping, recording } = vol.swapMarkOnAllocate();
      expect([shipping, recording]).toEqual([PLANE_MOA[0], PLANE_MOA[1]]);
      mutate(img, bs, 10, 3);
      await importImage(vol, memorySource(img));
      // the new allocations went to moa.1 only, and they are exactly active - t0
      const fresh = storageImageOf(vol, 'active - t0', { ranges: true });
      const moa1 = storageImageOf(vol, 'moa.1', { ranges: true });
      expect(moa1.blocks).toBeGreaterThan(0);
      expect(moa1.ranges).toEqual(fresh.ranges);
      expect(vol.countPlane(PLANE_MOA[0])).toBe(storageImageOf(vol, 't0').blocks);
      vol.clearMarkOnAllocate(shipping);
      vol.commit();
      expect(vol.countPlane(PLANE_MOA[0])).toBe(0);
    } finally {
      vol.close();
    }
    const again = Volume.open(file, { write: false });
    try {
      expect(again.rootRecord.moaCurrent).toBe(1);
      expect(again.rootRecord.moaSwaps).toBe(1);
    } finally {
      again.close();
    }
  });

  it('shadow snapshots give their blocks back when the volume is otherwise full', async () => {
    const bs = 4096;
    const blocks = 64;
    const file = path.join(dir, 'shadow.vol');
    // room for a bit more than two versions of the disk
    Volume.create(file, { size: blocks * bs, blockSize: bs, maxSnapshots: 4, volumeSize: (blocks * 2 + 24) * bs + 3 * bs * 10 });
    const vol = Volume.open(file, { write: true });
    try {
      const a = randomImage(blocks, bs, 11, 0);
      await importImage(vol, memorySource(a));
      vol.createSnapshot('regular');
      const b = randomImage(blocks, bs, 12, 0);
      await importImage(vol, memorySource(b));
      // a regular snapshot pins: a third full version does not fit
      const c = randomImage(blocks, bs, 13, 0);
      await expect(importImage(vol, memorySource(c))).rejects.toMatchObject({ code: 'volume-full' });
      expect((await exportToBuffer((s) => exportImage(vol, undefined, s))).equals(b)).toBe(true);
      // as a shadow it gives way
      vol.deleteSnapshot('regular');
      vol.createSnapshot('shade', { shadow: true });
      await importImage(vol, memorySource(c));
      await importImage(vol, memorySource(a));
      const entry = vol.snapshot('shade');
      expect(entry.reusedBlocks).toBeGreaterThan(0);
      await expect(exportToBuffer((s) => exportImage(vol, 'shade', s))).rejects.toMatchObject({ code: 'invalid-input' });
      expect((await exportToBuffer((s) => exportImage(vol, undefined, s))).equals(a)).toBe(true);
      const rep = checkVolume(vol);
      expect(rep.ok).toBe(true);
      expect(rep.trees.find((t) => t.name === 'shade')?.skipped).toMatch(/reused/);
    } finally {
      vol.close();
    }
  });
});
