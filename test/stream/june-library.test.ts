// The June example from the design, through the library and the in-memory medium: level 0
// at june3, level 1 at june5, level 2 at june7, level 1 at june9; every valid chain
// restores every snapshot byte for byte.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Catalog } from '../../src/catalog/catalog.js';
import { MemoryMedium } from '../../src/media/memory/memory-medium.js';
import { dumpVolume } from '../../src/stream/dump.js';
import { restoreStreams } from '../../src/stream/restore.js';
import { verifyStreams } from '../../src/stream/verify.js';
import { exportImage } from '../../src/volume/export.js';
import { importImage } from '../../src/volume/import.js';
import { checkVolume } from '../../src/volume/check.js';
import { Volume } from '../../src/volume/volume.js';
import { exportToBuffer, memorySource, mutate, randomImage, tempDir } from '../support/images.js';

const dir = tempDir('imgstream-june-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

describe('June example (library)', () => {
  it('dumps levels 0/1/2/1 and restores every valid chain exactly', async () => {
    const bs = 4096;
    const blocks = 1024;
    const src = path.join(dir, 'src.vol');
    Volume.create(src, { size: blocks * bs, blockSize: bs, maxSnapshots: 16 });
    const catalog = new Catalog(path.join(dir, 'catalog.json'));
    const media = new MemoryMedium();
    const images = new Map<string, Buffer>();
    const img = randomImage(blocks, bs, 1);
    const vol = Volume.open(src, { write: true });
    const streamOf = new Map<string, number>();
    try {
      for (let d = 1; d <= 9; d++) {
        mutate(img, bs, 40, d);
        await importImage(vol, memorySource(img));
        vol.createSnapshot(`june${d}`);
        images.set(`june${d}`, Buffer.from(img));
        const level = { 3: 0, 5: 1, 7: 2, 9: 1 }[d as 3 | 5 | 7 | 9];
        if (level === undefined) continue;
        const r = await dumpVolume(vol, () => media.target(), { level, snapshot: `june${d}`, order: 'vbn', compression: { codec: 'zstd', level: 1 }, threads: 0, catalog });
        streamOf.set(`june${d}`, media.streams.length);
        if (d === 5) expect(r.expression).toBe('june5 + june4 - june3');
        if (d === 7) expect(r.expression).toBe('june7 + june6 - june5');
        if (d === 9) expect(r.expression).toBe('june9 + june8 + june7 + june6 + june5 + june4 - june3');
      }
    } finally {
      vol.close();
    }
    const chains = [['june3'], ['june3', 'june5'], ['june3', 'june5', 'june7'], ['june3', 'june9'], ['june3', 'june5', 'june7', 'june9']];
    for (const chain of chains) {
      const sources = chain.map((t) => media.source(streamOf.get(t)!));
      const ver = await verifyStreams(sources);
      expect(ver.ok).toBe(true);
      const dst = path.join(dir, `dst-${chain.join('-')}.vol`);
      const res = await restoreStreams(sources, dst);
      expect(res.created).toBe(true);
      const top = Number(chain.at(-1)!.slice(4));
      const rv = Volume.open(dst, { write: false });
      try {
        expect(rv.snapshots().map((s) => s.name)).toEqual(Array.from({ length: top }, (_, i) => `june${i + 1}`).filter((n) => chain.length > 1 || Number(n.slice(4)) <= 3));
        for (const s of rv.snapshots()) {
          const out = await exportToBuffer((sink) => exportImage(rv, s.name, sink));
          expect(out.equals(images.get(s.name)!), `${chain.join('>')}: ${s.name}`).toBe(true);
        }
        expect((await exportToBuffer((sink) => exportImage(rv, undefined, sink))).equals(images.get(chain.at(-1)!)!)).toBe(true);
        const rep = checkVolume(rv);
        expect([...rep.problems, ...rep.trees.flatMap((t) => t.problems)]).toEqual([]);
      } finally {
        rv.close();
      }
    }
  });
});
