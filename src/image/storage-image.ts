// Storage images: an expression checked against a volume's planes, then evaluated in ONE
// pass over the chunks of the planes it names, with memory bounded by a few chunks.
import { InvalidInputError, NotFoundError } from '../core/errors.js';
import { BitKernel, KERNEL_UNIT_BYTES } from './bit-kernel.js';
import { forEachExtent } from './bit-words.js';
import { type BinaryKind, type ImageExpression, formatExpression } from './expression.js';
import type { PlaneRef, PlaneSource } from './plane-source.js';

export { forEachExtent } from './bit-words.js';

export interface ResolvedPlane {
  readonly kind: 'plane';
  readonly name: string;
  readonly ref: PlaneRef;
}

/** An expression whose names are known planes and whose every subtrahend is a snapshot. */
export type ResolvedExpression =
  | ResolvedPlane
  | { readonly kind: Exclude<BinaryKind, 'difference'>; readonly left: ResolvedExpression; readonly right: ResolvedExpression }
  | { readonly kind: 'difference'; readonly left: ResolvedExpression; readonly right: ResolvedPlane };

export type ImageProgress = (chunksDone: number, chunksTotal: number) => void;

export interface EvaluateOptions {
  /** Also list the extents as [firstVbn, count] pairs (memory grows with their number). */
  ranges?: boolean;
  /** Called every PROGRESS_EVERY chunks and once at the end. */
  onProgress?: ImageProgress;
}

export interface StorageImageSummary {
  /** The expression, printed canonically. */
  expression: string;
  blocks: number;
  /** blocks * blockSize. */
  bytes: number;
  /** Maximal runs of consecutive VBNs in the image. */
  extents: number;
  /** The extents in VBN order, only when asked for. */
  ranges?: Array<[firstVbn: number, count: number]>;
}

export interface ImageChunk {
  chunk: number;
  /** The image's words for this chunk; reused, valid only until the iterator moves on. */
  words: Uint32Array;
}

export const PROGRESS_EVERY = 64;

const SUBTRAHEND_HINT =
  'an image may leave out only blocks the receiver already holds, and only a snapshot is sure to be held unchanged: ' +
  'subtracting anything but a snapshot could drop blocks an incremental needs, as in "june5 + june4 - june3"';

/** Checks every name against the source and every subtrahend against the snapshot rule. */
export function resolveExpression(ast: ImageExpression, source: PlaneSource): ResolvedExpression {
  const refs = new Map<string, PlaneRef>();
  for (const name of planeNames(ast)) {
    if (refs.has(name)) continue;
    const ref = source.resolve(name);
    if (!ref) throw new NotFoundError(`unknown plane "${name}" in expression`, unknownPlaneHint(name, source));
    refs.set(name, ref);
  }
  const resolve = (e: ImageExpression): ResolvedExpression => {
    if (e.kind === 'plane') return { kind: 'plane', name: e.name, ref: refs.get(e.name)! };
    if (e.kind === 'difference') {
      const right = e.right.kind === 'plane' ? refs.get(e.right.name)! : undefined;
      if (!right?.snapshot) {
        throw new InvalidInputError(
          `the right side of "-" must be a snapshot, not "${formatExpression(e.right)}"`,
          SUBTRAHEND_HINT,
        );
      }
      return { kind: 'difference', left: resolve(e.left), right: { kind: 'plane', name: right.name, ref: right } };
    }
    return { kind: e.kind, left: resolve(e.left), right: resolve(e.right) };
  };
  return resolve(ast);
}

/** Counts the image's blocks, bytes and extents in one pass over the chunks. */
export function evaluateImage(
  resolved: ResolvedExpression,
  source: PlaneSource,
  opts: EvaluateOptions = {},
): StorageImageSummary {
  const program = new ChunkProgram(resolved, source);
  const n = source.wordsPerChunk;
  const chunkVbns = n * 32;
  let ranges: Array<[number, number]> | undefined;
  let addRun: ((first: number, count: number) => void) | undefined;
  if (opts.ranges) {
    const list: Array<[number, number]> = (ranges = []);
    let last: [number, number] | undefined;
    // forEachExtent reports a run per chunk: join the pieces of one run across chunks.
    addRun = (first, count) => {
      if (last !== undefined && last[0] + last[1] === first) last[1] += count;
      else list.push((last = [first, count]));
    };
  }
  const onProgress = opts.onProgress;
  const total = source.chunks;
  for (let c = 0; c < total; c++) {
    const words = program.run(c);
    program.tally();
    if (addRun !== undefined) forEachExtent(words, c * chunkVbns, addRun, n);
    if (onProgress !== undefined && ((c + 1) % PROGRESS_EVERY === 0 || c + 1 === total)) onProgress(c + 1, total);
  }
  const summary: StorageImageSummary = {
    expression: formatExpression(resolved),
    blocks: program.blocks,
    bytes: program.blocks * source.blockSize,
    extents: program.extents,
  };
  if (ranges) summary.ranges = ranges;
  return summary;
}

/**
 * Walks the image in VBN order, yielding the chunks that hold any of its blocks. The
 * words are one reused buffer: use or copy them before asking for the next chunk.
 */
export function* imageChunks(
  resolved: ResolvedExpression,
  source: PlaneSource,
  opts: { onProgress?: ImageProgress; fromChunk?: number; toChunk?: number } = {},
): Generator<ImageChunk, void, undefined> {
  const program = new ChunkProgram(resolved, source);
  const total = Math.min(source.chunks, opts.toChunk ?? source.chunks);
  for (let c = opts.fromChunk ?? 0; c < total; c++) {
    const words = program.run(c);
    if (program.any()) yield { chunk: c, words };
    if (opts.onProgress && ((c + 1) % PROGRESS_EVERY === 0 || c + 1 === total)) opts.onProgress(c + 1, total);
  }
}

/**
 * Random access to an image's chunks, for a caller that asks about VBNs in no particular
 * order: returns chunk c's words when it holds any block of the image (a reused buffer,
 * valid until the next call), else undefined.
 */
export function imageChunkReader(resolved: ResolvedExpression, source: PlaneSource): (c: number) => Uint32Array | undefined {
  const program = new ChunkProgram(resolved, source);
  return (c) => {
    if (!Number.isSafeInteger(c) || c < 0 || c >= source.chunks) throw new RangeError(`chunk ${c} is not in 0..${source.chunks - 1}`);
    const words = program.run(c);
    return program.any() ? words : undefined;
  };
}

const OP_LOAD = 0; // reg = plane
const OP_OR = 1; // reg |= plane
const OP_AND = 2; // reg &= plane
const OP_ANDNOT = 3; // reg &= ~plane
const OP_OR_REG = 4; // reg |= reg2
const OP_AND_REG = 5; // reg &= reg2

/**
 * The expression compiled to a flat list of operations over registers, slots of a
 * BitKernel allocated once. Each plane chunk is copied into the kernel (into its register
 * for a load, else into the input slot) before the next chunk() call, as the PlaneSource
 * contract requires. Union and intersection commute, so a plane on either side is
 * applied straight from its chunk; a register is added only where both sides are
 * compound, e.g. (a - s) + (b - t).
 */
class ChunkProgram {
  private readonly op: Int32Array;
  private readonly dst: Int32Array;
  private readonly src: Int32Array;
  private readonly kernel: BitKernel;
  /** The kernel slot plane chunks are copied into; registers are slots 0..input-1. */
  private readonly input: number;
  /** Register 0's first n words: the result. */
  private readonly result: Uint32Array;
  /** The last word tallied, bit 31 set: a run may continue into the next chunk. */
  private carry = false;
  private readonly n: number;
  private readonly lastChunk: number;
  /** Words of the last chunk holding VBNs < nblocks, and the mask of its last one. */
  private readonly lastWords: number;
  private readonly lastMask: number;

  constructor(resolved: ResolvedExpression, private readonly source: PlaneSource) {
    const ops: number[] = [];
    const dsts: number[] = [];
    const srcs: number[] = [];
    let registers = 1;
    const emit = (op: number, dst: number, src: number): void => {
      ops.push(op);
      dsts.push(dst);
      srcs.push(src);
    };
    const compile = (e: ResolvedExpression, reg: number): void => {
      if (e.kind === 'plane') return emit(OP_LOAD, reg, e.ref.id);
      const planeOp = e.kind === 'union' ? OP_OR : e.kind === 'intersection' ? OP_AND : OP_ANDNOT;
      if (e.right.kind === 'plane') {
        compile(e.left, reg);
        emit(planeOp, reg, e.right.ref.id);
      } else if (e.left.kind === 'plane') {
        compile(e.right, reg); // only union and intersection get here: they commute
        emit(planeOp, reg, e.left.ref.id);
      } else {
        compile(e.left, reg);
        registers = Math.max(registers, reg + 2);
        compile(e.right, reg + 1);
        emit(e.kind === 'union' ? OP_OR_REG : OP_AND_REG, reg, reg + 1);
      }
    };
    compile(resolved, 0);
    this.op = Int32Array.from(ops);
    this.dst = Int32Array.from(dsts);
    this.src = Int32Array.from(srcs);
    this.n = source.wordsPerChunk;
    this.input = registers;
    // Volumes' chunks are blocks of 4 KiB or more; smaller ones (tests, in-memory
    // sources) are padded with zero words, which stay zero through every operation.
    this.kernel = new BitKernel(registers + 1, Math.ceil((this.n * 4) / KERNEL_UNIT_BYTES) * KERNEL_UNIT_BYTES);
    this.result = this.kernel.view(0).subarray(0, this.n);
    if (source.chunks !== Math.ceil(source.nblocks / (this.n * 32))) {
      throw new Error(`plane source has ${source.chunks} chunks for ${source.nblocks} blocks of ${this.n * 32} VBNs per chunk`);
    }
    this.lastChunk = source.chunks - 1;
    const lastBits = source.nblocks - this.lastChunk * this.n * 32;
    this.lastWords = Math.ceil(lastBits / 32);
    this.lastMask = lastBits % 32 === 0 ? -1 : (1 << lastBits % 32) - 1;
  }

  /** Computes chunk c of the image into register 0 and returns its words (a view valid until the next run). */
  run(c: number): Uint32Array {
    const { op, dst, src, kernel, input, n, source } = this;
    for (let k = 0; k < op.length; k++) {
      const d = dst[k];
      switch (op[k]) {
        case OP_LOAD:
          kernel.load(d, planeChunk(source, src[k], c, n));
          break;
        case OP_OR:
          kernel.load(input, planeChunk(source, src[k], c, n));
          kernel.or(d, input);
          break;
        case OP_AND:
          kernel.load(input, planeChunk(source, src[k], c, n));
          kernel.and(d, input);
          break;
        case OP_ANDNOT:
          kernel.load(input, planeChunk(source, src[k], c, n));
          kernel.andNot(d, input);
          break;
        case OP_OR_REG:
          kernel.or(d, src[k]);
          break;
        case OP_AND_REG:
          kernel.and(d, src[k]);
          break;
      }
    }
    // Sources promise zero bits past nblocks; the last chunk is masked anyway so counts
    // never include a VBN the volume does not have.
    const result = this.result;
    if (c === this.lastChunk) {
      result.fill(0, this.lastWords);
      result[this.lastWords - 1] &= this.lastMask;
    }
    return result;
  }

  /** True when the chunk last run has any block of the image. */
  any(): boolean {
    return this.kernel.any(0);
  }

  /** Adds the chunk last run to blocks and extents: chunks must be tallied in VBN order. */
  tally(): void {
    this.kernel.tally(0, this.carry);
    this.carry = this.result[this.n - 1] >>> 31 === 1;
  }

  get blocks(): number {
    return this.kernel.blocks;
  }

  get extents(): number {
    return this.kernel.extents;
  }
}

function planeChunk(source: PlaneSource, id: number, c: number, n: number): Uint32Array {
  const words = source.chunk(id, c);
  if (words.length !== n) throw new Error(`plane source returned ${words.length} words for chunk ${c}, expected ${n}`);
  return words;
}

function planeNames(e: ImageExpression, out: string[] = []): string[] {
  if (e.kind === 'plane') out.push(e.name);
  else {
    planeNames(e.left, out);
    planeNames(e.right, out);
  }
  return out;
}

function unknownPlaneHint(name: string, source: PlaneSource): string {
  const parts = splitIntoKnownNames(name, source);
  if (parts) {
    return `did you mean "${parts.join(' - ')}"? "-" may continue a name, so "${name}" is read as one name: put spaces around "-"`;
  }
  const known = source.names();
  if (name.length > 256) return `known planes: ${known.slice(0, 12).join(', ')}`;
  // A typo: a few edits, fewer for short names ("zz" is not "a" misspelt).
  const close = known.filter(
    (k) => editDistance(k.toLowerCase(), name.toLowerCase()) <= Math.min(3, Math.max(1, Math.floor(Math.min(k.length, name.length) / 3))),
  );
  const listed = known.length <= 12 ? known.join(', ') : `${known.slice(0, 12).join(', ')} and ${known.length - 12} more`;
  if (close.length > 0) return `did you mean ${close.map((k) => `"${k}"`).join(' or ')}? known planes: ${listed}`;
  return known.length > 0 ? `known planes: ${listed}` : 'the volume has no planes by that name';
}

/** Splits name at some of its '-' into known names (fewest parts), or returns undefined. */
function splitIntoKnownNames(name: string, source: PlaneSource): string[] | undefined {
  if (!name.includes('-') || name.length > 256) return undefined;
  // Part k starts at starts[k]; best[k] is the fewest known names covering name up to it.
  const starts = [0];
  for (let i = 0; i < name.length; i++) if (name[i] === '-') starts.push(i + 1);
  starts.push(name.length + 1);
  const best: Array<string[] | undefined> = starts.map(() => undefined);
  best[0] = [];
  for (let a = 0; a < starts.length - 1; a++) {
    const prefix = best[a];
    if (!prefix) continue;
    for (let b = a + 1; b < starts.length; b++) {
      const part = name.slice(starts[a], starts[b] - 1);
      if (part === '' || !source.resolve(part)) continue;
      if (best[b] === undefined || best[b]!.length > prefix.length + 1) best[b] = [...prefix, part];
    }
  }
  const whole = best[starts.length - 1];
  // One part would be the name itself, which is unknown.
  return whole && whole.length > 1 ? whole : undefined;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length];
}
