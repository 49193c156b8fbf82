import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { forEachExtent, popcount32 } from '../../src/image/bit-words.js';

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
