// The single-pass evaluation against a plain Set<number> model, on random small volumes
// with tiny blocks (many chunks, partial last words) and random valid expressions.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  MemoryPlaneSource,
  evaluateImage,
  formatExpression,
  forEachExtent,
  imageChunks,
  resolveExpression,
} from '../../src/image/index.js';
import { type ModelVolume, countLeaves, expressionArb, memoryPlanes, modelEvaluate, modelRanges, volumeArb } from './model.js';

const caseArb = volumeArb.chain((volume) =>
  fc.record({
    volume: fc.constant(volume),
    expression: expressionArb(
      volume.planes.map((p) => p.name),
      volume.planes.filter((p) => p.snapshot).map((p) => p.name),
    ),
  }),
);

function sourceFor(volume: ModelVolume): MemoryPlaneSource {
  return new MemoryPlaneSource({ nblocks: volume.nblocks, blockSize: volume.blockSize, planes: memoryPlanes(volume) });
}

function modelPlanes(volume: ModelVolume): Map<string, Set<number>> {
  return new Map(volume.planes.map((p) => [p.name, p.vbns]));
}

describe('storage image evaluation (property)', () => {
  it('gives exactly the model blocks, bytes, extents and ranges, in one pass', () => {
    fc.assert(
      fc.property(caseArb, ({ volume, expression }) => {
        const source = sourceFor(volume);
        const expected = modelEvaluate(expression, modelPlanes(volume));
        const ranges = modelRanges(expected);
        const resolved = resolveExpression(expression, source);

        const withRanges = evaluateImage(resolved, source, { ranges: true });
        expect(withRanges).toEqual({
          expression: formatExpression(expression),
          blocks: expected.size,
          bytes: expected.size * volume.blockSize,
          extents: ranges.length,
          ranges,
        });
        expect(source.chunkReads).toBe(source.chunks * countLeaves(expression));

        // Counting without ranges takes another path (bit tricks only).
        const counts = evaluateImage(resolved, source);
        expect(counts).toEqual({ expression: withRanges.expression, blocks: expected.size, bytes: withRanges.bytes, extents: ranges.length });
      }),
      { numRuns: 800 },
    );
  });

  it('walks the image chunk by chunk: exactly the model VBNs, in order', () => {
    fc.assert(
      fc.property(caseArb, ({ volume, expression }) => {
        const source = sourceFor(volume);
        const expected = [...modelEvaluate(expression, modelPlanes(volume))].sort((a, b) => a - b);
        const chunkVbns = source.wordsPerChunk * 32;
        const seen: number[] = [];
        const pieces: Array<[number, number]> = [];
        let previous = -1;
        for (const { chunk, words } of imageChunks(resolveExpression(expression, source), source)) {
          expect(chunk).toBeGreaterThan(previous);
          previous = chunk;
          let any = false;
          for (let w = 0; w < words.length; w++) {
            for (let b = 0; b < 32; b++) {
              if ((words[w] >>> b) & 1) {
                seen.push(chunk * chunkVbns + w * 32 + b);
                any = true;
              }
            }
          }
          expect(any).toBe(true);
          forEachExtent(words, chunk * chunkVbns, (first, count) => pieces.push([first, count]));
        }
        expect(seen).toEqual(expected);
        // Per-chunk extents, joined where one ends at the next one's start, are the model's ranges.
        const joined: Array<[number, number]> = [];
        for (const [first, count] of pieces) {
          const last = joined[joined.length - 1];
          if (last && last[0] + last[1] === first) last[1] += count;
          else joined.push([first, count]);
        }
        expect(joined).toEqual(modelRanges(new Set(expected)));
      }),
      { numRuns: 400 },
    );
  });

  it('refuses every difference whose right side is not a snapshot plane', () => {
    fc.assert(
      fc.property(volumeArb, fc.nat(), (volume, pick) => {
        const source = sourceFor(volume);
        const nonSnapshots = volume.planes.filter((p) => !p.snapshot);
        fc.pre(nonSnapshots.length > 0);
        const right = nonSnapshots[pick % nonSnapshots.length].name;
        const expression = { kind: 'difference' as const, left: { kind: 'plane' as const, name: volume.planes[0].name }, right: { kind: 'plane' as const, name: right } };
        expect(() => resolveExpression(expression, source)).toThrow(`the right side of "-" must be a snapshot, not "${right}"`);
      }),
      { numRuns: 100 },
    );
  });
});
