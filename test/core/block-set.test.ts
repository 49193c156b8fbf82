// BlockSet (the bitmap of changed blocks a journal keeps after an overflow, an import or a
// restore) against a plain Set of numbers (its members, count and runs), and its file
// (dirty.bits): saved whole, updated page by page, read back; missing, damaged or short of what dirty.json counts, it is
// unknown (null), never a smaller set.
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockSet, PAGE_BITS, PAGE_BYTES } from '../../src/core/block-set.js';
import { loadDirtyBlocks, saveDirtyBlocks } from '../../src/journal/dirty-blocks.js';
import { DIRTY_BITS } from '../../src/journal/journal-files.js';
import { tempDir } from '../support/images.js';

const root = tempDir('imgstream-block-set-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** An add of one block or of a range, over a span of a few pages (ranges cross page and byte boundaries, a few whole pages). */
const op = fc.oneof(
  { weight: 4, arbitrary: fc.record({ lbn: fc.integer({ min: 0, max: 4 * PAGE_BITS }), n: fc.constant(1) }) },
  { weight: 4, arbitrary: fc.record({ lbn: fc.integer({ min: 0, max: 4 * PAGE_BITS }), n: fc.integer({ min: 1, max: 300 }) }) },
  { weight: 1, arbitrary: fc.record({ lbn: fc.integer({ min: 0, max: 4 * PAGE_BITS }), n: fc.integer({ min: 1, max: 2 * PAGE_BITS + 17 }) }) },
);

function apply(set: BlockSet, model: Set<number>, { lbn, n }: { lbn: number; n: number }): void {
  if (n === 1) set.add(lbn);
  else set.addRange(lbn, n);
  for (let i = 0; i < n; i++) model.add(lbn + i);
}

function sorted(model: Set<number>): number[] {
  return [...model].sort((a, b) => a - b);
}

describe('BlockSet', () => {
  it('holds what a Set of the same adds holds, counts it, and lists it ascending', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 12 }), fc.array(op, { maxLength: 6 }), (ops, others) => {
        const set = new BlockSet();
        const model = new Set<number>();
        for (const o of ops) apply(set, model, o);
        const other = new BlockSet();
        for (const o of others) apply(other, model, o);
        set.addAll(other);
        expect(set.size).toBe(model.size);
        expect([...set.values()]).toEqual(sorted(model));
        for (const probe of [0, 7, 8, PAGE_BITS - 1, PAGE_BITS, 3 * PAGE_BITS + 5]) expect(set.has(probe)).toBe(model.has(probe));
        // as maximal runs: they hold the same blocks, ascending, and no two meet
        const runs = [...set.runs()];
        expect(runs.flatMap(([first, end]) => Array.from({ length: end - first }, (_, i) => first + i))).toEqual(sorted(model));
        for (let i = 1; i < runs.length; i++) expect(runs[i][0]).toBeGreaterThan(runs[i - 1][1]);
      }),
      { numRuns: 40 },
    );
  });

  it('takes a range as its pages, not an entry per block: 2^26 blocks (a 256 GiB trim of 4 KiB blocks), beyond what a Set holds', () => {
    const set = new BlockSet();
    set.addRange(5, 2 ** 26);
    set.add(2 ** 26 + 100);
    expect(set.size).toBe(2 ** 26 + 1);
    expect(set.has(4)).toBe(false);
    expect(set.has(5)).toBe(true);
    expect(set.has(2 ** 26 + 4)).toBe(true);
    expect(set.has(2 ** 26 + 5)).toBe(false);
    expect([...set.runs()]).toEqual([[5, 2 ** 26 + 5], [2 ** 26 + 100, 2 ** 26 + 101]]);
    expect(set.pageNumbers().length).toBe(Math.ceil((2 ** 26 + 101) / PAGE_BITS));
  });

  it('names the pages an add changed, once each, and none an add that changed nothing', () => {
    const set = new BlockSet();
    set.addRange(PAGE_BITS - 2, 4);
    expect(set.takeTouched()).toEqual([0, 1]);
    set.add(PAGE_BITS - 1);
    set.addRange(0, 3);
    expect(set.takeTouched()).toEqual([0]);
    set.addRange(PAGE_BITS - 2, 4);
    expect(set.takeTouched()).toEqual([]);
  });
});

describe('dirty.bits', () => {
  let n = 0;
  const freshDir = () => {
    const d = path.join(root, `j${n++}`);
    fs.mkdirSync(d);
    return d;
  };

  it('reads back what was saved, whole and then page by page, as the writer saves at each CP', () => {
    fc.assert(
      fc.property(fc.array(fc.array(op, { maxLength: 5 }), { minLength: 1, maxLength: 4 }), (rounds) => {
        const dir = freshDir();
        const set = new BlockSet();
        const model = new Set<number>();
        rounds.forEach((ops, i) => {
          for (const o of ops) apply(set, model, o);
          saveDirtyBlocks(dir, set, i === 0);
          const back = loadDirtyBlocks(dir, { blocks: set.size });
          expect(back).not.toBeNull();
          expect([...back!.values()]).toEqual(sorted(model));
        });
      }),
      { numRuns: 12 },
    );
  });

  it('keeps its size to the pages holding blocks (holes between them)', () => {
    const dir = freshDir();
    const set = new BlockSet();
    set.add(1000 * PAGE_BITS);
    saveDirtyBlocks(dir, set, true);
    const st = fs.statSync(path.join(dir, DIRTY_BITS));
    expect(st.size).toBe(1002 * PAGE_BYTES);
    expect(st.blocks * 512).toBeLessThan(64 * PAGE_BYTES);
  });

  it('is unknown (null), never smaller, when missing, damaged, or holding fewer blocks than dirty.json counts', () => {
    const dir = freshDir();
    expect(loadDirtyBlocks(dir, { blocks: 1 })).toBeNull();
    const set = BlockSet.of([3, 4, 70000]);
    saveDirtyBlocks(dir, set, true);
    expect(loadDirtyBlocks(dir, { blocks: 3 })?.size).toBe(3);
    expect(loadDirtyBlocks(dir, { blocks: 4 })).toBeNull();
    const file = path.join(dir, DIRTY_BITS);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from('X'), 0, 1, 0);
    fs.closeSync(fd);
    expect(loadDirtyBlocks(dir, { blocks: 3 })).toBeNull();
  });

  it('reads the list of numbers dirty.json held before dirty.bits', () => {
    expect([...loadDirtyBlocks(freshDir(), { lbns: [9, 2, 5] })!.values()]).toEqual([2, 5, 9]);
  });
});
