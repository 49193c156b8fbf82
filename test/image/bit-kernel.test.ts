// The WebAssembly word loops against plain JavaScript on the same words, and the
// committed module against the .wat it is assembled from.
import fs from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BitKernel, KERNEL_UNIT_BYTES } from '../../src/image/bit-kernel.js';
import { BIT_KERNEL_WASM } from '../../src/image/bit-kernel-wasm.js';
import { KERNEL_TS, assembleKernel, kernelSource } from '../support/assemble-kernel.js';

const WORDS = KERNEL_UNIT_BYTES / 4;

/** Slots of random words: runs of zero and all-ones words with mixed words between. */
const slotArb = fc
  .array(fc.tuple(fc.constantFrom(0, 0xffffffff, -1), fc.integer({ min: 1, max: 300 }), fc.integer({ min: 0, max: 0xffffffff })), { minLength: 1, maxLength: 12 })
  .map((runs) => {
    const words = new Uint32Array(WORDS);
    let i = 0;
    for (const [kind, length, seed] of runs) {
      for (let k = 0; k < length && i < WORDS; k++, i++) {
        words[i] = kind === -1 ? Math.imul(seed ^ (i * 0x9e3779b1), 0x85ebca6b) >>> 0 : kind;
      }
    }
    return words;
  });

function naiveCounts(slots: Uint32Array[]): { blocks: number; extents: number } {
  let blocks = 0;
  let extents = 0;
  let previous = 0;
  for (const words of slots) {
    for (let v = 0; v < words.length * 32; v++) {
      const bit = (words[v >>> 5] >>> (v & 31)) & 1;
      blocks += bit;
      if (bit && !previous) extents++;
      previous = bit;
    }
  }
  return { blocks, extents };
}

describe('bit kernel', () => {
  it('is the module assembled from bit-kernel.wat (run `npm run wasm` after editing it)', async () => {
    const bytes = await assembleKernel();
    expect(Buffer.from(BIT_KERNEL_WASM, 'base64').equals(Buffer.from(bytes))).toBe(true);
    expect(fs.readFileSync(KERNEL_TS, 'utf8')).toBe(kernelSource(bytes));
  });

  it('computes OR, AND and AND-NOT word for word as JavaScript does', () => {
    fc.assert(
      fc.property(slotArb, slotArb, (a, b) => {
        const k = new BitKernel(2, KERNEL_UNIT_BYTES);
        for (const [apply, f] of [
          [() => k.or(0, 1), (x: number, y: number) => (x | y) >>> 0],
          [() => k.and(0, 1), (x: number, y: number) => (x & y) >>> 0],
          [() => k.andNot(0, 1), (x: number, y: number) => (x & ~y) >>> 0],
        ] as const) {
          k.load(0, a);
          k.load(1, b);
          apply();
          expect(k.view(0)).toEqual(a.map((x, i) => f(x, b[i])));
          expect(k.view(1)).toEqual(b); // the source is left alone
        }
      }),
      { numRuns: 60 },
    );
  });

  it('counts set bits and runs across tallies as if the slots were one bit string', () => {
    fc.assert(
      fc.property(fc.array(slotArb, { minLength: 1, maxLength: 5 }), (slots) => {
        const k = new BitKernel(1, KERNEL_UNIT_BYTES);
        let carry = false;
        for (const words of slots) {
          k.load(0, words);
          expect(k.tally(0, carry)).toBe(words.some((w) => w !== 0));
          expect(k.any(0)).toBe(words.some((w) => w !== 0));
          carry = words[WORDS - 1] >>> 31 === 1;
        }
        expect({ blocks: k.blocks, extents: k.extents }).toEqual(naiveCounts(slots));
      }),
      { numRuns: 60 },
    );
  });

  it('joins a run across the 64-bit lanes and vectors of one slot', () => {
    const k = new BitKernel(1, KERNEL_UNIT_BYTES);
    const words = new Uint32Array(WORDS);
    words.fill(0xffffffff, 1, 9); // VBNs 32..287: across lanes and vectors
    words[20] = 0x80000000; // VBN 671 ...
    words[21] = 0x00000001; // ... and 672: one run across a word boundary
    k.load(0, words);
    k.tally(0, false);
    expect(k.blocks).toBe(8 * 32 + 2);
    expect(k.extents).toBe(2);
  });

  it('counts 1 MiB of ones (16-bit lanes widened in time) and totals past 2^32', () => {
    const k = new BitKernel(1, 1 << 20);
    k.view(0).fill(0xffffffff);
    const rounds = 513; // 513 * 2^23 bits > 2^32
    for (let i = 0; i < rounds; i++) k.tally(0, i > 0);
    expect(k.blocks).toBe(rounds * 2 ** 23);
    expect(k.extents).toBe(1);
  });

  it('refuses slots that are not whole 4 KiB units', () => {
    expect(() => new BitKernel(1, 1000)).toThrow(/multiple of 4096/);
    expect(() => new BitKernel(1, 0)).toThrow(/multiple of 4096/);
  });
});
