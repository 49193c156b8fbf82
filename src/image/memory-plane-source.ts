// The in-memory twin of a volume's planes, for tests and benchmarks. Block sizes may be
// tiny (4 or 8 bytes: one or two words per chunk) so that chunk and word boundaries are
// crossed everywhere.
import { InvalidInputError } from '../core/errors.js';
import type { PlaneRef, PlaneSource } from './plane-source.js';

export interface MemoryPlane {
  readonly name: string;
  readonly snapshot: boolean;
  /** The VBNs set in the plane, or its words (bit b of word w is VBN w*32 + b; bits >= nblocks are dropped). */
  readonly bits: ReadonlySet<number> | Uint32Array;
}

export interface MemoryPlaneSourceSpec {
  readonly nblocks: number;
  /** Bytes per block: a power of two, at least 4. */
  readonly blockSize: number;
  readonly planes: readonly MemoryPlane[];
  /**
   * true (default): chunk() copies into one buffer that the next call overwrites, as a
   * file-backed source reading into a reused buffer would, so a caller that keeps a chunk
   * too long sees wrong bits. false: chunk() returns views, with no copy (benchmarks).
   */
  readonly reuseBuffer?: boolean;
}

export class MemoryPlaneSource implements PlaneSource {
  readonly nblocks: number;
  readonly blockSize: number;
  readonly wordsPerChunk: number;
  readonly chunks: number;
  /** Number of chunk() calls so far: lets tests check that evaluation is one pass. */
  chunkReads = 0;
  private readonly refs: PlaneRef[];
  private readonly words: Uint32Array[];
  private readonly buffer: Uint32Array | undefined;

  constructor(spec: MemoryPlaneSourceSpec) {
    const { nblocks, blockSize } = spec;
    if (!Number.isSafeInteger(nblocks) || nblocks < 0) throw new InvalidInputError(`invalid block count ${nblocks}`);
    if (!Number.isSafeInteger(blockSize) || blockSize < 4 || (blockSize & (blockSize - 1)) !== 0) {
      throw new InvalidInputError(`invalid block size ${blockSize}`, 'use a power of two of at least 4 bytes');
    }
    this.nblocks = nblocks;
    this.blockSize = blockSize;
    this.wordsPerChunk = blockSize / 4;
    this.chunks = Math.ceil(nblocks / (this.wordsPerChunk * 32));
    const totalWords = this.chunks * this.wordsPerChunk;
    this.refs = [];
    this.words = [];
    for (const plane of spec.planes) {
      if (this.refs.some((r) => r.name === plane.name)) throw new InvalidInputError(`duplicate plane "${plane.name}"`);
      this.refs.push({ id: this.refs.length, name: plane.name, snapshot: plane.snapshot });
      this.words.push(planeWords(plane, nblocks, totalWords));
    }
    this.buffer = spec.reuseBuffer === false ? undefined : new Uint32Array(this.wordsPerChunk);
  }

  resolve(name: string): PlaneRef | undefined {
    return this.refs.find((r) => r.name === name);
  }

  names(): string[] {
    return this.refs.map((r) => r.name);
  }

  chunk(id: number, c: number): Uint32Array {
    const words = this.words[id];
    if (words === undefined || !Number.isInteger(c) || c < 0 || c >= this.chunks) {
      throw new RangeError(`no chunk ${c} of plane ${id}`);
    }
    this.chunkReads++;
    const view = words.subarray(c * this.wordsPerChunk, (c + 1) * this.wordsPerChunk);
    if (this.buffer === undefined) return view;
    this.buffer.set(view);
    return this.buffer;
  }
}

function planeWords(plane: MemoryPlane, nblocks: number, totalWords: number): Uint32Array {
  const out = new Uint32Array(totalWords);
  if (plane.bits instanceof Uint32Array) {
    out.set(plane.bits.subarray(0, totalWords));
    // Drop bits at VBNs >= nblocks: the PlaneSource contract says they are zero.
    const full = Math.floor(nblocks / 32);
    if (full < totalWords) {
      out[full] &= (1 << nblocks % 32) - 1;
      out.fill(0, full + 1);
    }
  } else {
    for (const vbn of plane.bits) {
      if (!Number.isInteger(vbn) || vbn < 0 || vbn >= nblocks) {
        throw new InvalidInputError(`plane "${plane.name}": VBN ${vbn} is outside 0..${nblocks - 1}`);
      }
      out[Math.floor(vbn / 32)] |= 1 << vbn % 32;
    }
  }
  return out;
}
