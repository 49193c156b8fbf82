// Counting over planes, one pass each: the blocks a set of planes holds between them, and
// those only some planes hold (shadow snapshots' reusable blocks).
import { popcount32 } from '../image/bit-words.js';
import type { VolumeLayout } from './layout.js';
import type { PlaneScanner } from './plane-scanner.js';
import type { SparseBitmap } from './sparse-bitmap.js';

/** VBNs any of the planes (or `extra`) holds. */
export function countUnion(layout: VolumeLayout, planes: PlaneScanner[], extra?: SparseBitmap): number {
  const words = layout.wordsPerPlaneBlock;
  const acc = new Uint32Array(words);
  let n = 0;
  for (let c = 0; c < layout.planeBlocks; c++) {
    let any = false;
    for (const scan of planes) {
      const w = scan.words(c);
      if (scan.isZero(w)) continue; // most of a sparse volume's planes
      if (!any) acc.set(w);
      else for (let i = 0; i < words; i++) acc[i] |= w[i];
      any = true;
    }
    const r = extra?.chunk(c);
    if (r) {
      if (!any) acc.fill(0);
      for (let i = 0; i < words; i++) acc[i] |= r[i];
      any = true;
    }
    if (any) for (let i = 0; i < words; i++) if (acc[i] !== 0) n += popcount32(acc[i]);
  }
  return n;
}

/** VBNs some of `only` hold and none of `not` (nor `extra`). */
export function countOnlyIn(layout: VolumeLayout, only: PlaneScanner[], not: PlaneScanner[], extra?: SparseBitmap): number {
  const words = layout.wordsPerPlaneBlock;
  const pinned = new Uint32Array(words);
  const held = new Uint32Array(words);
  let n = 0;
  for (let c = 0; c < layout.planeBlocks; c++) {
    let anyHeld = false;
    held.fill(0);
    for (const scan of only) {
      const w = scan.words(c);
      if (scan.isZero(w)) continue;
      for (let i = 0; i < words; i++) held[i] |= w[i];
      anyHeld = true;
    }
    if (!anyHeld) continue; // nothing only some hold here
    pinned.fill(0);
    for (const scan of not) {
      const w = scan.words(c);
      if (scan.isZero(w)) continue;
      for (let i = 0; i < words; i++) pinned[i] |= w[i];
    }
    const r = extra?.chunk(c);
    if (r) for (let i = 0; i < words; i++) pinned[i] |= r[i];
    for (let i = 0; i < words; i++) {
      const x = held[i] & ~pinned[i];
      if (x !== 0) n += popcount32(x);
    }
  }
  return n;
}
