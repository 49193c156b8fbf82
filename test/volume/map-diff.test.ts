// forEachChangedLbn: the blocks two states of a volume map differently, found by walking
// the two trees only where they differ. Checked against the states themselves: the blocks
// written with new contents, zeroed or newly written between two snapshots are exactly the
// ones named, on a map two levels deep and on one three levels deep (a disk past 1 GiB).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/index.js';
import { writeLogicalBytes, zeroLogicalBytes } from '../../src/volume/logical-io.js';
import { forEachChangedLbn } from '../../src/volume/map-diff.js';
import { rng, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const root = tempDir('imgstream-map-diff-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function changedBetween(vol: Volume, a: string, b: string): number[] {
  const out: number[] = [];
  const trees = { path: vol.path, blockSize: vol.blockSize, nblocks: vol.nblocks, readNode: (v: number, buf: Buffer) => vol.readBlock(v, buf) };
  const rootOf = (name: string) => vol.snapshots().find((s) => s.name === name)!.mapRoot;
  forEachChangedLbn(trees, vol.rootRecord.mapDepth, rootOf(a), rootOf(b), (l) => out.push(l));
  return out;
}

describe('forEachChangedLbn', () => {
  for (const [blocks, depth] of [[2048, 2], [262144 + 4096, 3]] as const) {
    it(`names exactly the blocks whose mapping changed (a map ${depth} levels deep)`, async () => {
      const vol = at(`v${blocks}.vol`);
      await setupOk(['volume', 'create', vol, '--size', String(blocks * BS), '--max-snapshots', '4'], { env });
      const r = rng(blocks);
      const block = (fill: number) => Buffer.alloc(BS, fill);
      // state a: runs of data at the start, across the 1 GiB boundary (a node of the third level) and at the end
      const runs = [0, Math.min(262144, blocks) - 150, blocks - 200].map((first) => Array.from({ length: 150 }, (_, i) => first + i));
      const written = new Set(runs.flat());
      const v = Volume.open(vol, { write: true });
      try {
        expect(v.rootRecord.mapDepth).toBe(depth);
        for (const l of written) writeLogicalBytes(v, l * BS, block(1 + (l % 200)));
        v.commit();
        v.createSnapshot('a');
        // state b: some rewritten with new bytes, some zeroed (unmapped), some written where nothing was
        const changed = new Set<number>();
        for (const l of written) {
          const x = r();
          if (x < 0.1) writeLogicalBytes(v, l * BS, block(250));
          else if (x < 0.2) zeroLogicalBytes(v, l * BS, BS);
          else continue;
          changed.add(l);
        }
        for (let i = 0; i < 30; i++) {
          const l = Math.floor(r() * blocks);
          if (written.has(l) || changed.has(l)) continue;
          writeLogicalBytes(v, l * BS, block(251));
          changed.add(l);
        }
        v.commit();
        v.createSnapshot('b');
        const want = [...changed].sort((x, y) => x - y);
        expect(want.length).toBeGreaterThan(40);
        expect(changedBetween(v, 'a', 'b')).toEqual(want);
        expect(changedBetween(v, 'b', 'a')).toEqual(want);
        expect(changedBetween(v, 'a', 'a')).toEqual([]);
      } finally {
        v.close();
      }
    });
  }
});
