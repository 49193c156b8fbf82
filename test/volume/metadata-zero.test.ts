// The metadata store's blocks of zeros: one shared, read-only block, and a bit per block of
// the file found zero, so plane passes over a thin volume skip them unread. What must hold:
// the shared block is never written through (forWrite gives a copy), and a block that
// stops being zeros (changed and committed, written straight to the file for a free
// snapshot slot, or under a journal overlay) is never read as zeros again. Checked against
// what the file holds, through the store and through a plane scanner, with a cache small
// enough that blocks are evicted.
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockFile } from '../../src/volume/block-file.js';
import { VolumeLayout } from '../../src/volume/layout.js';
import { MetadataStore } from '../../src/volume/metadata-store.js';
import { PlaneScanner } from '../../src/volume/plane-scanner.js';
import { tempDir } from '../support/images.js';

const root = tempDir('imgstream-metadata-zero-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const BS = 512;
// 4 planes of 24 blocks each (a plane block holds BS * 8 VBNs)
const layout = new VolumeLayout(BS, 24 * BS * 8, 1);

function open(name: string): { file: BlockFile; meta: MetadataStore } {
  const p = path.join(root, name);
  fs.writeFileSync(p, '');
  fs.truncateSync(p, layout.fileBytes);
  const file = BlockFile.open(p, true);
  return { file, meta: new MetadataStore(file, layout, 0) }; // the smallest cache: 64 blocks, evicted from
}

type Step =
  | { op: 'set'; m: number; word: number; value: number } // forWrite, then the change committed (written and marked clean)
  | { op: 'direct'; m: number; value: number } // written straight to the file (a free slot's plane), then forgotten
  | { op: 'read'; m: number }
  | { op: 'scan'; plane: number };

describe('metadata store: blocks of zeros', () => {
  it('never reads a block as zeros once it holds something, whatever the order of reads, writes and passes', () => {
    const first = layout.planeBlock(0, 0);
    const count = layout.dataStart - first;
    const step: fc.Arbitrary<Step> = fc.oneof(
      fc.record({ op: fc.constant('set' as const), m: fc.integer({ min: first, max: first + count - 1 }), word: fc.integer({ min: 0, max: BS / 4 - 1 }), value: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ op: fc.constant('direct' as const), m: fc.integer({ min: first, max: first + count - 1 }), value: fc.integer({ min: 0, max: 3 }) }),
      fc.record({ op: fc.constant('read' as const), m: fc.integer({ min: first, max: first + count - 1 }) }),
      fc.record({ op: fc.constant('scan' as const), plane: fc.integer({ min: 0, max: layout.planeCount - 1 }) }),
    );
    let run = 0;
    fc.assert(
      fc.property(fc.array(step, { maxLength: 60 }), (steps) => {
        const { file, meta } = open(`p${run++}.vol`);
        const model = new Map<number, Buffer>(); // what the file holds, block by block
        const want = (m: number) => model.get(m) ?? Buffer.alloc(BS);
        const got = (w: Uint32Array) => Buffer.from(w.buffer, w.byteOffset, w.byteLength);
        try {
          for (const s of steps) {
            if (s.op === 'set') {
              const b = meta.forWrite(s.m);
              expect(meta.isZero(b.words), 'forWrite gives a block of its own').toBe(false);
              b.words[s.word] = s.value;
              file.write(b.buf, layout.metaOffset(s.m)); // as a CP writes it
              meta.markClean();
              model.set(s.m, Buffer.from(b.buf));
            } else if (s.op === 'direct') {
              const b = Buffer.alloc(BS, s.value);
              file.write(b, layout.metaOffset(s.m));
              meta.forget(s.m, 1);
              model.set(s.m, b);
            } else if (s.op === 'read') {
              expect(got(meta.read(s.m).words).equals(want(s.m)), `block ${s.m}`).toBe(true);
            } else {
              const scan = new PlaneScanner(file, layout, meta, s.plane);
              for (let c = 0; c < layout.planeBlocks; c++) {
                const m = layout.planeBlock(s.plane, c);
                const w = scan.words(c);
                expect(got(w).equals(want(m)), `plane ${s.plane} block ${c}`).toBe(true);
                if (scan.isZero(w)) expect(want(m).equals(Buffer.alloc(BS))).toBe(true);
              }
            }
            // the shared block of zeros stays zeros
            expect(got(meta.zeroWords).equals(Buffer.alloc(BS))).toBe(true);
          }
          for (let m = first; m < first + count; m++) expect(got(meta.read(m).words).equals(want(m)), `block ${m} at the end`).toBe(true);
        } finally {
          file.close();
        }
      }),
      { numRuns: 120 },
    );
  });

  it('a journal overlay over a block found zero is read, not the zeros', () => {
    const { file, meta } = open('overlay.vol');
    try {
      const m = layout.planeBlock(1, 3);
      expect(meta.isZero(meta.read(m).words)).toBe(true);
      expect(meta.isKnownZero(m)).toBe(true);
      meta.setOverlay(new Map([[m, Buffer.alloc(BS, 9)]]));
      expect(meta.read(m).buf.equals(Buffer.alloc(BS, 9))).toBe(true);
      expect([...new PlaneScanner(file, layout, meta, 1).words(3)].every((x) => x === 0x09090909)).toBe(true);
    } finally {
      file.close();
    }
  });
});
