import { describe, expect, it } from 'vitest';
import { InvalidInputError, NotFoundError } from '../../src/core/errors.js';
import {
  MemoryPlaneSource,
  PROGRESS_EVERY,
  type PlaneSource,
  evaluateImage,
  imageChunks,
  parseExpression,
  resolveExpression,
} from '../../src/image/index.js';

const range = (first: number, count: number) => Array.from({ length: count }, (_, i) => first + i);

/** The June volume: 200 blocks of 4 bytes, so a chunk is one word (32 VBNs). */
function juneVolume(): MemoryPlaneSource {
  return new MemoryPlaneSource({
    nblocks: 200,
    blockSize: 4,
    planes: [
      { name: 'june3', snapshot: true, bits: new Set(range(0, 40)) },
      { name: 'june4', snapshot: true, bits: new Set([...range(0, 30), ...range(60, 10)]) },
      { name: 'june5', snapshot: true, bits: new Set([...range(0, 20), ...range(60, 10), ...range(100, 5)]) },
      { name: 'june4-june3', snapshot: true, bits: new Set([199]) }, // a name with '-' really exists
      { name: 'daily-2026-11-23', snapshot: true, bits: new Set([1]) },
      { name: 'active', snapshot: false, bits: new Set([...range(0, 20), 150]) },
      { name: 'b', snapshot: false, bits: new Set([2]) },
      { name: 'c', snapshot: true, bits: new Set([3]) },
    ],
  });
}

function image(text: string, source: PlaneSource = juneVolume(), ranges = true) {
  return evaluateImage(resolveExpression(parseExpression(text), source), source, { ranges });
}

function thrown(f: () => unknown): Error & { hint?: string; code?: string } {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected an error');
}

describe('resolveExpression', () => {
  it('refuses an unknown plane with NotFoundError', () => {
    const err = thrown(() => resolveExpression(parseExpression('june5 + july1'), juneVolume()));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('unknown plane "july1" in expression');
    expect(err.hint).toContain('known planes: june3, june4, june5');
  });

  it('suggests a close name for a typo', () => {
    const err = thrown(() => resolveExpression(parseExpression('june5 + actve'), juneVolume()));
    expect(err.hint).toMatch(/^did you mean "active"\?/);
  });

  it('suggests only names a few edits away', () => {
    const source = volumeWith(['daily-2026-11-23', 'a', 'june4']);
    const hint = (text: string) => thrown(() => resolveExpression(parseExpression(text), source)).hint;
    expect(hint('daily-2026-11-2')).toMatch(/^did you mean "daily-2026-11-23"\?/);
    expect(hint('Daily-2026-11-28')).toMatch(/^did you mean "daily-2026-11-23"\?/);
    expect(hint('zz')).toBe('known planes: daily-2026-11-23, a, june4');
    expect(hint('weekly-2026-11-23')).toBe('known planes: daily-2026-11-23, a, june4');
  });

  it('hints at spaces around "-" when an unknown name splits into known ones', () => {
    const source = volumeWith(['june3', 'june4', 'june5']);
    const err = thrown(() => resolveExpression(parseExpression('june5 + june4-june3'), source));
    expect(err).toBeInstanceOf(NotFoundError);
    expect(err.message).toBe('unknown plane "june4-june3" in expression');
    expect(err.hint).toContain('did you mean "june4 - june3"?');
    expect(err.hint).toContain('put spaces around "-"');
  });

  it('splits at the right "-" when the known names contain "-" themselves', () => {
    const source = volumeWith(['daily-2026-11-23', 'daily-2026-11-22', 'daily']);
    const err = thrown(() => resolveExpression(parseExpression('daily-2026-11-23-daily-2026-11-22'), source));
    expect(err.hint).toContain('did you mean "daily-2026-11-23 - daily-2026-11-22"?');
  });

  it('gives no split hint when the parts are not all known', () => {
    const err = thrown(() => resolveExpression(parseExpression('june4-june9'), volumeWith(['june4', 'june3'])));
    expect(err.hint).not.toContain('put spaces');
  });

  it('resolves the example exactly as the user wrote it', () => {
    // june4-june3 exists on this volume, so it is a name, not a difference.
    expect(image('june4-june3').blocks).toBe(1);
  });

  it('refuses a non-snapshot plane on the right of "-"', () => {
    const err = thrown(() => resolveExpression(parseExpression('june5 - active'), juneVolume()));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err.message).toBe('the right side of "-" must be a snapshot, not "active"');
    expect(err.hint).toContain('could drop blocks an incremental needs');
    // the hint is printed in parentheses: none of its own (it ended '(e.g. "june5 + june4 - june3")')
    expect(err.hint).not.toMatch(/[()]/);
  });

  it('refuses a compound right side of "-", even of snapshots', () => {
    const err = thrown(() => resolveExpression(parseExpression('june5 - (june4 + june3)'), juneVolume()));
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err.message).toBe('the right side of "-" must be a snapshot, not "june4 + june3"');
    const nested = thrown(() => resolveExpression(parseExpression('june5 + (june4 - (c & june3))'), juneVolume()));
    expect(nested.message).toBe('the right side of "-" must be a snapshot, not "c & june3"');
  });

  it('accepts a parenthesized snapshot on the right of "-"', () => {
    expect(image('june5 - (june3)').blocks).toBe(15);
  });

  it('allows non-snapshots anywhere but the right of "-"', () => {
    // (active - june3) + (b & active) = {150} + {2}
    expect(image('active - june3 + b & active').ranges).toEqual([
      [2, 1],
      [150, 1],
    ]);
  });
});

function volumeWith(names: string[]): MemoryPlaneSource {
  return new MemoryPlaneSource({
    nblocks: 64,
    blockSize: 4,
    planes: names.map((name) => ({ name, snapshot: true, bits: new Set<number>() })),
  });
}

describe('evaluateImage', () => {
  it('evaluates the June example: june5 + june4 - june3', () => {
    expect(image('june5 + june4 - june3')).toEqual({
      expression: 'june5 + june4 - june3',
      blocks: 15,
      bytes: 60,
      extents: 2,
      ranges: [
        [60, 10],
        [100, 5],
      ],
    });
  });

  it('prints the expression canonically and lists ranges only when asked', () => {
    const r = image('((june5)  +june4)-june3', juneVolume(), false);
    expect(r).toEqual({ expression: 'june5 + june4 - june3', blocks: 15, bytes: 60, extents: 2 });
    expect('ranges' in r).toBe(false);
  });

  it('honours precedence: a + b & c is a + (b & c)', () => {
    expect(image('june4 + june5 & c').blocks).toBe(40); // june4 + {3}
    expect(image('(june4 + june5) & c').blocks).toBe(1);
  });

  it.each([
    // blockSize 4: a chunk is 32 VBNs, so 31|32, 63|64 ... are chunk boundaries
    ['a run across one chunk boundary', 4, [...range(30, 5)], [[30, 5]]],
    ['two bits either side of a boundary', 4, [31, 32], [[31, 2]]],
    ['a run over whole chunks', 4, range(0, 100), [[0, 100]]],
    ['runs ending and starting on boundaries', 4, [...range(0, 32), ...range(64, 32)], [[0, 32], [64, 32]]],
    ['a run over many chunks with a gap', 4, [...range(5, 90), ...range(96, 4)], [[5, 90], [96, 4]]],
    // blockSize 8: chunks of 2 words; 31|32 is a word boundary, 63|64 a chunk boundary
    ['a run across a word boundary inside a chunk', 8, range(20, 20), [[20, 20]]],
    ['a run across word and chunk boundaries', 8, range(60, 40), [[60, 40]]],
    ['single bits at every boundary', 8, [31, 33, 63, 65, 95, 97], [[31, 1], [33, 1], [63, 1], [65, 1], [95, 1], [97, 1]]],
    ['the last VBN of a partial last word', 8, [...range(90, 10)], [[90, 10]]],
  ])('counts extents for %s', (_what, blockSize, vbns, ranges) => {
    const source = new MemoryPlaneSource({
      nblocks: 100,
      blockSize,
      planes: [
        { name: 'x', snapshot: true, bits: new Set(vbns) },
        { name: 'none', snapshot: true, bits: new Set() },
      ],
    });
    const r = image('x - none', source);
    expect(r.ranges).toEqual(ranges);
    expect(r.extents).toBe(ranges.length);
    expect(r.blocks).toBe(vbns.length);
    expect(image('x - none', source, false).extents).toBe(ranges.length);
  });

  it('counts a full 4 KiB-block volume as one run across chunk boundaries', () => {
    const nblocks = 2 * 32768 + 5; // 4 KiB blocks: 32768 VBNs per chunk, so 3 chunks
    const words = new Uint32Array(Math.ceil(nblocks / 32)).fill(0xffffffff);
    const source = new MemoryPlaneSource({ nblocks, blockSize: 4096, planes: [{ name: 's', snapshot: true, bits: words }] });
    expect(source.chunks).toBe(3);
    expect(image('s', source)).toMatchObject({ blocks: nblocks, bytes: nblocks * 4096, extents: 1, ranges: [[0, nblocks]] });
  });

  it('uses scratch registers when both sides of an operator are compound', () => {
    // (june5 - june3) + (june4 - june3) and (june4 + active) & (june5 + b)
    expect(image('(june5 - june3) + (june4 - june3)').ranges).toEqual([
      [60, 10],
      [100, 5],
    ]);
    expect(image('(june4 + active) & (june5 + b)').ranges).toEqual([
      [0, 20],
      [60, 10],
    ]);
    expect(image('june3 & (june4 & (june5 & active))').ranges).toEqual([[0, 20]]);
  });

  it('reads each plane chunk once: a single pass', () => {
    const source = juneVolume();
    const resolved = resolveExpression(parseExpression('june5 + june4 - june3'), source);
    evaluateImage(resolved, source);
    expect(source.chunkReads).toBe(3 * source.chunks);
  });

  it('never counts VBNs past nblocks, even from a source that leaves them set', () => {
    const leaky: PlaneSource = {
      nblocks: 168,
      blockSize: 16,
      wordsPerChunk: 4,
      chunks: 2,
      resolve: (name) => (name === 'all' ? { id: 0, name, snapshot: true } : undefined),
      names: () => ['all'],
      chunk: () => new Uint32Array(4).fill(0xffffffff),
    };
    // The last chunk holds VBNs 128..167: one word and 8 bits valid, two words past the end.
    expect(image('all', leaky)).toMatchObject({ blocks: 168, extents: 1, ranges: [[0, 168]] });
  });

  it('reports progress every 64 chunks and at the end', () => {
    const source = new MemoryPlaneSource({ nblocks: 200 * 32 - 3, blockSize: 4, planes: [{ name: 's', snapshot: true, bits: new Set([7]) }] });
    const calls: Array<[number, number]> = [];
    const r = evaluateImage(resolveExpression(parseExpression('s'), source), source, { onProgress: (d, t) => calls.push([d, t]) });
    expect(PROGRESS_EVERY).toBe(64);
    expect(calls).toEqual([
      [64, 200],
      [128, 200],
      [192, 200],
      [200, 200],
    ]);
    expect(r.blocks).toBe(1);
  });

  it('evaluates an empty volume to an empty image', () => {
    const source = new MemoryPlaneSource({ nblocks: 0, blockSize: 4, planes: [{ name: 's', snapshot: true, bits: new Set() }] });
    expect(image('s', source)).toEqual({ expression: 's', blocks: 0, bytes: 0, extents: 0, ranges: [] });
  });
});

describe('imageChunks', () => {
  it('yields the chunks holding image blocks, in VBN order, with their words', () => {
    const source = juneVolume();
    const resolved = resolveExpression(parseExpression('june5 + june4 - june3'), source);
    const seen: Array<{ chunk: number; words: number[] }> = [];
    for (const { chunk, words } of imageChunks(resolved, source)) seen.push({ chunk, words: [...words] });
    // 60..69 spans chunks 1 (bits 28..31) and 2 (bits 0..5); 100..104 is chunk 3 bits 4..8.
    expect(seen).toEqual([
      { chunk: 1, words: [0xf0000000] },
      { chunk: 2, words: [0x3f] },
      { chunk: 3, words: [0x1f0] },
    ]);
  });

  it('yields nothing for an empty image, and reports progress', () => {
    const source = juneVolume();
    const calls: number[] = [];
    const chunks = [...imageChunks(resolveExpression(parseExpression('june3 - june3'), source), source, { onProgress: (d) => calls.push(d) })];
    expect(chunks).toEqual([]);
    expect(calls).toEqual([source.chunks]);
  });
});
