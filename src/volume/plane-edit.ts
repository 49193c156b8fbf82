// Edits of bit planes through the metadata store: a changed plane block becomes dirty
// and is journaled with the next CP. Each edit reads first and writes only blocks whose
// words change, so an edit that changes nothing dirties nothing.
import type { VolumeLayout } from './layout.js';
import type { MetadataStore } from './metadata-store.js';

/** Sets or clears the bit of `vbn` in `plane`. True when it changed. */
export function setPlaneBit(meta: MetadataStore, layout: VolumeLayout, plane: number, vbn: number, on: boolean): boolean {
  const bits = layout.bitsPerPlaneBlock;
  const m = layout.planeBlock(plane, Math.floor(vbn / bits));
  const b = vbn % bits;
  const mask = 1 << (b & 31);
  const cur = meta.read(m).words;
  if (((cur[b >>> 5] & mask) !== 0) === on) return false;
  const w = meta.forWrite(m).words;
  if (on) w[b >>> 5] |= mask;
  else w[b >>> 5] &= ~mask;
  return true;
}

/** ORs `x` into metadata block `m` (one plane block). True when it set a bit. */
export function orIntoPlaneBlock(meta: MetadataStore, m: number, x: Uint32Array): boolean {
  const cur = meta.read(m).words;
  let differs = false;
  for (let i = 0; i < x.length; i++) if ((cur[i] | x[i]) !== cur[i]) differs = true;
  if (!differs) return false;
  const w = meta.forWrite(m).words;
  for (let i = 0; i < x.length; i++) w[i] |= x[i];
  return true;
}

/** Clears every bit of `plane`. */
export function clearPlane(meta: MetadataStore, layout: VolumeLayout, plane: number): void {
  for (let i = 0; i < layout.planeBlocks; i++) {
    const m = layout.planeBlock(plane, i);
    const w = meta.read(m).words;
    if (!meta.isZero(w) && !allZero(w)) meta.replace(m, Buffer.alloc(layout.blockSize));
  }
}

/** Makes `plane` equal to `src`, chunk by chunk; `leaving(c, words)` gets the bits each changed chunk loses. */
export function replacePlane(meta: MetadataStore, layout: VolumeLayout, plane: number, src: (c: number) => Uint32Array, leaving: (c: number, words: Uint32Array) => void): void {
  for (let c = 0; c < layout.planeBlocks; c++) {
    const from = src(c);
    const m = layout.planeBlock(plane, c);
    const cur = meta.read(m).words;
    let same = true;
    for (let i = 0; i < cur.length; i++) if (cur[i] !== from[i]) same = false;
    if (same) continue;
    const gone = new Uint32Array(cur.length);
    for (let i = 0; i < cur.length; i++) gone[i] = cur[i] & ~from[i];
    leaving(c, gone);
    meta.forWrite(m).words.set(from);
  }
}

/** Whether every word of `w` is zero. */
export function allZero(w: Uint32Array): boolean {
  for (let i = 0; i < w.length; i++) if (w[i] !== 0) return false;
  return true;
}
