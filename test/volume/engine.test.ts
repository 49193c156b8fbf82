import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { importImage } from '../../src/volume/import.js';
import { exportImage } from '../../src/volume/export.js';
import { checkVolume } from '../../src/volume/check.js';
import { exportToBuffer, memorySource, mutate, randomImage, tempDir } from '../support/images.js';

const dir = tempDir();
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('volume engine', () => {
  for (const bs of [4096, 65536]) {
    it(`round-trips snapshots byte for byte at block size ${bs}`, async () => {
      const blocks = 700;
      const file = path.join(dir, `v${bs}.vol`);
      Volume.create(file, { size: blocks * bs, blockSize: bs, maxSnapshots: 16 });
      const img = randomImage(blocks, bs, bs);
      const saved: Array<[string, Buffer]> = [];
      for (let round = 0; round < 6; round++) {
        const vol = Volume.open(file, { write: true });
        try {
          await importImage(vol, memorySource(img));
          vol.createSnapshot(`s${round}`);
          saved.push([`s${round}`, Buffer.from(img)]);
          if (round === 3) vol.deleteSnapshot('s1');
        } finally {
          vol.close();
        }
        mutate(img, bs, 1 + round * 20, round + 1);
      }
      const vol = Volume.open(file, { write: false });
      try {
        for (const [name, expected] of saved) {
          if (name === 's1') continue;
          const out = await exportToBuffer((sink) => exportImage(vol, name, sink));
          expect(out.equals(expected), `snapshot ${name}`).toBe(true);
        }
        const rep = checkVolume(vol);
        expect(rep.problems).toEqual([]);
        expect(rep.trees.flatMap((t) => t.problems)).toEqual([]);
        expect(rep.ok).toBe(true);
      } finally {
        vol.close();
      }
    });
  }
});
