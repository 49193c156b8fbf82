// The overlay a restore as of a time (and a fold) takes: of the intervals up to the point,
// the newest version of every LBN, against a map filled interval after interval, with runs
// of zeros (a trim's one entry) cut where newer versions lie over them; a resync of more
// blocks than a Map holds (2^24), which once made exports as of such a point fail with
// "Map maximum size exceeded"; and a trim of a whole large disk, one extent.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Overlay } from '../../src/journal/overlay.js';
import type { IntervalIndex } from '../../src/journal/interval-file.js';

/** An interval index of `entries` (ascending, not overlapping): a data block, or a run of `zeros` blocks. */
function index(seq: number, entries: Array<{ lbn: number; zeros?: number }>): IntervalIndex {
  const offsets = new Float64Array(entries.length);
  entries.forEach((x, e) => (offsets[e] = x.zeros ? -x.zeros : e * 4096));
  return { file: `${seq}.ivl`, header: {} as IntervalIndex['header'], lbns: Float64Array.from(entries.map((x) => x.lbn)), offsets, crcs: new Uint32Array(entries.length), bytes: 0 };
}

/** Per block the overlay holds: which interval and entry its version is, ascending. */
function blocksOf(o: Overlay): Array<[number, { file: number; entry: number }]> {
  const out: Array<[number, { file: number; entry: number }]> = [];
  let next = 0;
  for (let k = 0; k < o.extentCount; k++) {
    expect(o.startAt(k), 'extents ascending, never overlapping').toBeGreaterThanOrEqual(next);
    expect(o.countAt(k)).toBeGreaterThan(0);
    if (!o.isZeroAt(k)) expect(o.countAt(k), 'a data extent is one block').toBe(1);
    for (let b = o.startAt(k); b < o.startAt(k) + o.countAt(k); b++) out.push([b, o.versionAt(k)]);
    next = o.startAt(k) + o.countAt(k);
  }
  return out;
}

describe('Overlay', () => {
  it('takes the newest version of each LBN, ascending, and answers for the blocks of a range', () => {
    const entry = fc.record({ lbn: fc.integer({ min: 0, max: 300 }), zeros: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 40 })) });
    const intervals = fc.array(fc.array(entry, { maxLength: 40 }), { maxLength: 9 });
    fc.assert(
      fc.property(intervals, fc.integer({ min: 0, max: 340 }), fc.integer({ min: 1, max: 80 }), (sets, from, span) => {
        // each interval's entries made ascending and not overlapping
        const indexes = sets.map((raw, seq) => {
          const sorted = [...raw].sort((a, b) => a.lbn - b.lbn);
          const kept: Array<{ lbn: number; zeros?: number }> = [];
          let next = 0;
          for (const x of sorted) {
            if (x.lbn < next) continue;
            kept.push(x.zeros ? { lbn: x.lbn, zeros: x.zeros } : { lbn: x.lbn });
            next = x.lbn + (x.zeros || 1);
          }
          return index(seq, kept);
        });
        const model = new Map<number, { file: number; entry: number }>();
        indexes.forEach((ix, file) => ix.lbns.forEach((lbn, e) => {
          const n = ix.offsets[e] < 0 ? -ix.offsets[e] : 1;
          for (let b = lbn; b < lbn + n; b++) model.set(b, { file, entry: e });
        }));
        const o = new Overlay(indexes);
        const want = [...model.entries()].sort((a, b) => a[0] - b[0]);
        expect(blocksOf(o)).toEqual(want);
        expect(o.blockCount).toBe(want.length);
        const zero = (lbn: number) => {
          const v = model.get(lbn)!;
          return indexes[v.file].offsets[v.entry] < 0;
        };
        const inRange = want.map(([l]) => l).filter((l) => l >= from && l < from + span);
        const { held, count } = o.heldIn(from, span);
        expect(count).toBe(inRange.length);
        expect([...held.keys()].filter((i) => held[i] === 1).map((i) => from + i)).toEqual(inRange);
        expect(o.holdsDataIn(from, from + span)).toBe(inRange.some((l) => !zero(l)));
        expect(o.zeroesAll(from, from + span)).toBe(inRange.length === span && inRange.every(zero));
        const pieces: number[] = [];
        o.eachIn(from, from + span, (k, lbn, n) => {
          expect(lbn).toBeGreaterThanOrEqual(o.startAt(k));
          for (let b = lbn; b < lbn + n; b++) pieces.push(b);
        });
        expect(pieces).toEqual(inRange);
      }),
      { numRuns: 150 },
    );
  });

  it('holds a resync of 2^24 + 2 blocks beside the intervals after it', () => {
    const n = 2 ** 24 + 2;
    const big = index(1, []);
    big.lbns = new Float64Array(n);
    for (let i = 0; i < n; i++) big.lbns[i] = i;
    big.offsets = new Float64Array(n).fill(-1);
    big.crcs = new Uint32Array(n);
    const o = new Overlay([big, index(2, [{ lbn: 5 }, { lbn: n + 10 }])]);
    expect(o.blockCount).toBe(n + 1);
    expect(o.versionAt(5)).toEqual({ file: 1, entry: 0 });
    expect(o.versionAt(6)).toEqual({ file: 0, entry: 6 });
    expect(o.versionAt(n)).toEqual({ file: 1, entry: 1 });
  });

  it('keeps a trim of a 16 TiB disk as one extent, cut where blocks were written after it', () => {
    const n = 2 ** 32; // 16 TiB of 4 KiB blocks
    const o = new Overlay([index(1, [{ lbn: 7 }]), index(2, [{ lbn: 0, zeros: n }]), index(3, [{ lbn: 3 }, { lbn: n - 1 }])]);
    expect(o.blockCount).toBe(n);
    expect(o.extentCount).toBe(4);
    expect([0, 1, 2, 3].map((k) => [o.startAt(k), o.countAt(k), o.isZeroAt(k)])).toEqual([[0, 3, true], [3, 1, false], [4, n - 5, true], [n - 1, 1, false]]);
    expect(o.zeroesAll(8, 2 ** 31)).toBe(true);
    expect(o.zeroesAll(2, 5)).toBe(false);
    expect(o.positionOf(2 ** 31)).toBe(2);
  });
});
