// Snapshot planes of a large, half-full volume, made up word by word. Filling 1 TiB of
// VBNs through the engine is impossible here, and evaluating a storage image reads only
// plane bytes, never data blocks, so planes with realistic contents are all the
// evaluation needs.
//
// s1: allocation in runs, as a write-anywhere allocator leaves it: a chain of words that
// are empty, full or mixed (a random word), each state kept for about 10 words (~320
// blocks), so about half the bits are set. s2 is s1 with 5% of its words replaced by
// random words (blocks freed and new ones allocated between the snapshots), s3 is s2
// with another 5% replaced.
import { Xorshift128 } from './xorshift.js';

export const CHANGED_WORDS = 0.05;
const STAY = 0.9;

export interface SyntheticPlanes {
  /** s1, s2, s3, each `words` long, bits at VBNs >= nblocks clear. */
  s1: Uint32Array;
  s2: Uint32Array;
  s3: Uint32Array;
  /** Fraction of set bits of s1, s2, s3. */
  density: [number, number, number];
}

export function syntheticPlanes(words: number, nblocks: number, seed: number): SyntheticPlanes {
  const rng = new Xorshift128(seed);
  const s1 = new Uint32Array(words);
  let state = 0;
  for (let i = 0; i < words; i++) {
    if (rng.float() >= STAY) state = (state + 1 + rng.below(2)) % 3;
    s1[i] = state === 0 ? 0 : state === 1 ? 0xffffffff : rng.next();
  }
  const s2 = changeWords(s1, rng);
  const s3 = changeWords(s2, rng);
  for (const p of [s1, s2, s3]) clearPastEnd(p, nblocks);
  return { s1, s2, s3, density: [density(s1, nblocks), density(s2, nblocks), density(s3, nblocks)] };
}

function changeWords(from: Uint32Array, rng: Xorshift128): Uint32Array {
  const out = from.slice();
  for (let i = 0; i < out.length; i++) if (rng.float() < CHANGED_WORDS) out[i] = rng.next();
  return out;
}

function clearPastEnd(p: Uint32Array, nblocks: number): void {
  const full = Math.floor(nblocks / 32);
  if (full >= p.length) return;
  p[full] &= nblocks % 32 === 0 ? 0 : (1 << nblocks % 32) - 1;
  p.fill(0, full + 1);
}

function density(p: Uint32Array, nblocks: number): number {
  let bits = 0;
  for (let i = 0; i < p.length; i++) bits += popcount(p[i]);
  return bits / nblocks;
}

/** Blocks and extents of the image s3 + s2 - s1, computed directly: the answer the product must give. */
export function expectedImage(p: SyntheticPlanes): { blocks: number; extents: number } {
  let blocks = 0;
  let extents = 0;
  let carry = 0; // top bit of the previous result word
  for (let i = 0; i < p.s1.length; i++) {
    const r = ((p.s3[i] | p.s2[i]) & ~p.s1[i]) >>> 0;
    blocks += popcount(r);
    // a run starts at each set bit whose lower neighbour (across words too) is clear
    extents += popcount((r & ~((r << 1) | carry)) >>> 0);
    carry = r >>> 31;
  }
  return { blocks, extents };
}

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  x = (x + (x >>> 4)) & 0x0f0f0f0f;
  return Math.imul(x, 0x01010101) >>> 24;
}
