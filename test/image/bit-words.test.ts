import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  BitTally,
  andNotWords,
  andNotWordsGrouped,
  andWords,
  andWordsGrouped,
  forEachExtent,
  groupCount,
  orWords,
  orWordsGrouped,
  popcount32,
  summarizeGroups,
} from '../../src/image/bit-words.js';

function naivePopcount(x: number): number {
  let n = 0;
  for (let b = 0; b < 32; b++) n += (x >>> b) & 1;
  return n;
}

function extentsOf(words: Uint32Array, base = 0): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  forEachExtent(words, base, (first, count) => out.push([first, count]));
  return out;
}

describe('popcount32', () => {
  it.each([
    [0, 0],
    [1, 1],
    [0x80000000, 1],
    [0xffffffff, 32],
    [0x55555555, 16],
    [0xf0f0f0f0, 16],
    [-1, 32],
  ])('popcount32(%i) is %i', (x, n) => {
    expect(popcount32(x)).toBe(n);
  });

  it('agrees with counting bit by bit', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0xffffffff }), (x) => {
      expect(popcount32(x)).toBe(naivePopcount(x));
    }));
  });
});

describe('forEachExtent', () => {
  it('joins runs across word boundaries and reports runs touching the end', () => {
    // word0 all ones + word1 bit0 -> [0, 33]; word2 bit31 + word3 bit0 -> [95, 2]; word3 bit31 -> [127, 1]
    expect(extentsOf(new Uint32Array([0xffffffff, 0x1, 0x80000000, 0x80000001]))).toEqual([
      [0, 33],
      [95, 2],
      [127, 1],
    ]);
  });

  it('offsets by the base VBN and handles alternating bits', () => {
    expect(extentsOf(new Uint32Array([0b1011]), 1000)).toEqual([
      [1000, 2],
      [1003, 1],
    ]);
    expect(extentsOf(new Uint32Array([0xaaaaaaaa])).length).toBe(16);
    expect(extentsOf(new Uint32Array([0x7ffffffe]))).toEqual([[1, 30]]);
    expect(extentsOf(new Uint32Array([0, 0, 0]))).toEqual([]);
  });

  it('looks at the first n words only', () => {
    const out: Array<[number, number]> = [];
    forEachExtent(new Uint32Array([0x80000000, 0xffffffff]), 0, (f, c) => out.push([f, c]), 1);
    expect(out).toEqual([[31, 1]]);
  });

  it('agrees with a bit-by-bit scan', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant(0), fc.constant(0xffffffff), fc.integer({ min: 0, max: 0xffffffff })), { maxLength: 12 }), (list) => {
        const words = Uint32Array.from(list);
        const expected: Array<[number, number]> = [];
        for (let v = 0; v < words.length * 32; v++) {
          if (!((words[v >>> 5] >>> (v & 31)) & 1)) continue;
          const last = expected[expected.length - 1];
          if (last && last[0] + last[1] === v) last[1]++;
          else expected.push([v, 1]);
        }
        expect(extentsOf(words, 64)).toEqual(expected.map(([f, c]) => [f + 64, c]));
      }),
    );
  });
});

describe('word operations', () => {
  it('compute OR, AND, AND-NOT and the group summary for any length, tails included', () => {
    const word = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffffffff }));
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 40 }).chain((n) => fc.tuple(fc.array(word, { minLength: n, maxLength: n }), fc.array(word, { minLength: n, maxLength: n }))), ([a, b]) => {
        const n = a.length;
        for (const [plain, grouped, f] of [
          [orWords, orWordsGrouped, (x: number, y: number) => (x | y) >>> 0],
          [andWords, andWordsGrouped, (x: number, y: number) => (x & y) >>> 0],
          [andNotWords, andNotWordsGrouped, (x: number, y: number) => (x & ~y) >>> 0],
        ] as const) {
          const expected = a.map((x, i) => f(x, b[i]));
          const d = Uint32Array.from(a);
          plain(d, Uint32Array.from(b), n);
          expect([...d]).toEqual(expected);

          const dg = Uint32Array.from(a);
          const groups = new Uint32Array(groupCount(n)).fill(0xdeadbeef);
          grouped(dg, Uint32Array.from(b), n, groups);
          expect([...dg]).toEqual(expected);
          const summary = new Uint32Array(groupCount(n));
          summarizeGroups(dg, n, summary);
          expect([...groups]).toEqual([...summary]);
          for (let g = 0; g < groups.length; g++) {
            expect(groups[g] !== 0).toBe(expected.slice(g * 8, g * 8 + 8).some((x) => x !== 0));
          }
        }
      }),
    );
  });
});

describe('BitTally', () => {
  it('counts blocks and extents across calls as if the words were one array', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.constant(0), fc.constant(0xffffffff), fc.integer({ min: 0, max: 0xffffffff })), { minLength: 1, maxLength: 40 }), fc.integer({ min: 1, max: 12 }), (list, chunkWords) => {
        const all = Uint32Array.from(list);
        const tally = new BitTally();
        for (let i = 0; i < all.length; i += chunkWords) {
          const chunk = all.slice(i, i + chunkWords);
          const groups = new Uint32Array(groupCount(chunk.length));
          summarizeGroups(chunk, chunk.length, groups);
          tally.add(chunk, groups, chunk.length);
        }
        expect(tally.blocks).toBe(list.reduce((s, w) => s + popcount32(w), 0));
        expect(tally.extents).toBe(extentsOf(all).length);
      }),
    );
  });

  it('counts full groups of all-ones words (256 bits a group) and runs through them', () => {
    const words = new Uint32Array(20).fill(0xffffffff);
    words[17] = 0x7fffffff; // run 0..574 ends at bit 30 of word 17; word 18, 19 start a second
    const groups = new Uint32Array(groupCount(20));
    summarizeGroups(words, 20, groups);
    const tally = new BitTally();
    tally.add(words, groups, 20);
    expect(tally.blocks).toBe(20 * 32 - 1);
    expect(tally.extents).toBe(2);
  });

  it('skips groups whose summary is zero', () => {
    const tally = new BitTally();
    tally.add(new Uint32Array(16).fill(1), new Uint32Array([0, 1]), 16);
    expect(tally.blocks).toBe(8);
  });
});
