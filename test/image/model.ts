// The plane algebra as plain sets of VBNs, and fast-check arbitraries for volumes, planes
// and expressions: the model the single-pass evaluation is checked against.
import fc from 'fast-check';
import type { ImageExpression } from '../../src/image/index.js';
import type { MemoryPlane } from '../../src/image/index.js';

export function plane(name: string): ImageExpression {
  return { kind: 'plane', name };
}
export function union(left: ImageExpression, right: ImageExpression): ImageExpression {
  return { kind: 'union', left, right };
}
export function difference(left: ImageExpression, right: ImageExpression): ImageExpression {
  return { kind: 'difference', left, right };
}
export function intersection(left: ImageExpression, right: ImageExpression): ImageExpression {
  return { kind: 'intersection', left, right };
}

export function modelEvaluate(e: ImageExpression, planes: ReadonlyMap<string, ReadonlySet<number>>): Set<number> {
  if (e.kind === 'plane') return new Set(planes.get(e.name)!);
  const left = modelEvaluate(e.left, planes);
  const right = modelEvaluate(e.right, planes);
  if (e.kind === 'union') return new Set([...left, ...right]);
  if (e.kind === 'intersection') return new Set([...left].filter((v) => right.has(v)));
  return new Set([...left].filter((v) => !right.has(v)));
}

/** Maximal runs of consecutive VBNs, as [first, count], in VBN order. */
export function modelRanges(vbns: ReadonlySet<number>): Array<[number, number]> {
  const sorted = [...vbns].sort((a, b) => a - b);
  const ranges: Array<[number, number]> = [];
  for (const v of sorted) {
    const last = ranges[ranges.length - 1];
    if (last && last[0] + last[1] === v) last[1]++;
    else ranges.push([v, 1]);
  }
  return ranges;
}

export function countLeaves(e: ImageExpression): number {
  return e.kind === 'plane' ? 1 : countLeaves(e.left) + countLeaves(e.right);
}

/** Names that exercise the lexer: '-', '.', ':' inside names, digits first. */
export const NAME_POOL = ['june5', 'daily-2026-11-23', 's1', 'moa.0', 'vol:snap', '_x', '7up', 'a-b-c'];

export interface ModelPlane {
  name: string;
  snapshot: boolean;
  vbns: Set<number>;
  /** Handed to the source as words, with garbage in the bits past nblocks. */
  asWords: boolean;
  garbage: number;
}

export interface ModelVolume {
  nblocks: number;
  blockSize: number;
  planes: ModelPlane[];
}

/** A plane's VBNs: runs (crossing word and chunk boundaries) and single bits, maybe inverted to make it dense. */
function vbnsArb(nblocks: number): fc.Arbitrary<Set<number>> {
  const vbn = fc.integer({ min: 0, max: nblocks - 1 });
  return fc
    .record({
      runs: fc.array(fc.tuple(vbn, fc.integer({ min: 1, max: 80 })), { maxLength: 6 }),
      singles: fc.array(vbn, { maxLength: 40 }),
      invert: fc.boolean(),
    })
    .map(({ runs, singles, invert }) => {
      const set = new Set<number>(singles);
      for (const [first, count] of runs) for (let v = first; v < Math.min(nblocks, first + count); v++) set.add(v);
      if (!invert) return set;
      const inverted = new Set<number>();
      for (let v = 0; v < nblocks; v++) if (!set.has(v)) inverted.add(v);
      return inverted;
    });
}

/** Small volumes with tiny blocks (32 to 128 VBNs per chunk): many chunks, partial last words. */
export const volumeArb: fc.Arbitrary<ModelVolume> = fc
  .record({
    nblocks: fc.integer({ min: 1, max: 300 }),
    blockSize: fc.constantFrom(4, 8, 16),
    nplanes: fc.integer({ min: 1, max: 5 }),
  })
  .chain(({ nblocks, blockSize, nplanes }) =>
    fc.record({
      nblocks: fc.constant(nblocks),
      blockSize: fc.constant(blockSize),
      planes: fc.tuple(
        ...Array.from({ length: nplanes }, (_, i) =>
          fc.record({
            name: fc.constant(NAME_POOL[i]),
            // The first plane is a snapshot so that differences can always be formed.
            snapshot: i === 0 ? fc.constant(true) : fc.boolean(),
            vbns: vbnsArb(nblocks),
            asWords: fc.boolean(),
            garbage: fc.integer({ min: 1, max: 0xffffffff }),
          }),
        ),
      ),
    }),
  );

export function memoryPlanes(volume: ModelVolume): MemoryPlane[] {
  return volume.planes.map((p) => {
    if (!p.asWords) return { name: p.name, snapshot: p.snapshot, bits: p.vbns };
    const words = new Uint32Array(Math.ceil(volume.nblocks / 32) + 2).fill(p.garbage);
    for (let v = 0; v < volume.nblocks; v++) {
      if (p.vbns.has(v)) words[v >>> 5] |= 1 << (v & 31);
      else words[v >>> 5] &= ~(1 << (v & 31));
    }
    return { name: p.name, snapshot: p.snapshot, bits: words };
  });
}

/** Valid expressions over the given planes: every subtrahend is a snapshot name. */
export function expressionArb(names: string[], snapshots: string[]): fc.Arbitrary<ImageExpression> {
  const leaf = fc.constantFrom(...names).map(plane);
  const snapshotLeaf = fc.constantFrom(...snapshots).map(plane);
  return fc.letrec<{ expr: ImageExpression }>((tie) => ({
    expr: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      leaf,
      fc.record({ kind: fc.constantFrom('union' as const, 'intersection' as const), left: tie('expr'), right: tie('expr') }),
      fc.record({ kind: fc.constant('difference' as const), left: tie('expr'), right: snapshotLeaf }),
    ),
  })).expr;
}

/** Any expression shape over the given names (the subtrahend rule is not the parser's business). */
export function anyExpressionArb(name: fc.Arbitrary<string>): fc.Arbitrary<ImageExpression> {
  return fc.letrec<{ expr: ImageExpression }>((tie) => ({
    expr: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      name.map(plane),
      fc.record({
        kind: fc.constantFrom('union' as const, 'difference' as const, 'intersection' as const),
        left: tie('expr'),
        right: tie('expr'),
      }),
    ),
  })).expr;
}
