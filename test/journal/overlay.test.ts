// The overlay a restore as of a time (and a fold) takes: of the intervals up to the point,
// the newest version of every LBN, against a map filled interval after interval; and a
// resync of more blocks than a Map holds (2^24), which once made exports as of such a
// point fail with "Map maximum size exceeded".
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Overlay } from '../../src/journal/overlay.js';
import type { IntervalIndex } from '../../src/journal/interval-file.js';

/** An interval index holding `lbns` (ascending); entry e is a zero block when `zero(e)`. */
function index(seq: number, lbns: number[], zero: (e: number) => boolean = () => false): IntervalIndex {
  const offsets = new Float64Array(lbns.length);
  lbns.forEach((_, e) => (offsets[e] = zero(e) ? -1 : e * 4096));
  return { file: `${seq}.ivl`, header: {} as IntervalIndex['header'], lbns: Float64Array.from(lbns), offsets, crcs: new Uint32Array(lbns.length), bytes: 0 };
}

describe('Overlay', () => {
  it('takes the newest version of each LBN, ascending, and finds the LBNs of a range', () => {
    const lbnSets = fc.array(fc.uniqueArray(fc.integer({ min: 0, max: 300 }), { maxLength: 60 }), { maxLength: 9 });
    fc.assert(
      fc.property(lbnSets, fc.integer({ min: 0, max: 300 }), fc.integer({ min: 0, max: 80 }), (sets, from, span) => {
        const indexes = sets.map((s, seq) => index(seq, [...s].sort((a, b) => a - b), (e) => (e + seq) % 3 === 0));
        const model = new Map<number, { file: number; entry: number }>();
        indexes.forEach((ix, file) => ix.lbns.forEach((lbn, entry) => model.set(lbn, { file, entry })));
        const o = new Overlay(indexes);
        const want = [...model.keys()].sort((a, b) => a - b);
        expect([...o.sortedLbns()]).toEqual(want);
        expect(o.blockCount).toBe(want.length);
        want.forEach((lbn, k) => {
          expect(o.versionAt(k)).toEqual(model.get(lbn));
          const v = model.get(lbn)!;
          expect(o.isZeroAt(k)).toBe(indexes[v.file].offsets[v.entry] < 0);
        });
        expect([...o.lbnsIn(from, from + span)]).toEqual(want.filter((l) => l >= from && l < from + span));
      }),
      { numRuns: 80 },
    );
  });

  it('holds a resync of 2^24 + 2 blocks beside the intervals after it', () => {
    const n = 2 ** 24 + 2;
    const big = index(1, []);
    big.lbns = new Float64Array(n);
    for (let i = 0; i < n; i++) big.lbns[i] = i;
    big.offsets = new Float64Array(n).fill(-1);
    big.crcs = new Uint32Array(n);
    const o = new Overlay([big, index(2, [5, n + 10])]);
    expect(o.blockCount).toBe(n + 1);
    expect(o.versionAt(5)).toEqual({ file: 1, entry: 0 });
    expect(o.versionAt(6)).toEqual({ file: 0, entry: 6 });
    expect(o.versionAt(n)).toEqual({ file: 1, entry: 1 });
  });
});
