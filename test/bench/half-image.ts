// A raw disk image about half compressible, as a disk of ordinary files is: each 4 KiB
// block is 2 KiB of pseudo-random words followed by a 16-byte pattern repeated over 2 KiB,
// and about 10% of the blocks are all zeros. Every block is a function of (seed, block
// number), so the image is never stored whole: it is generated into a pipe (`volume
// import --from -`), into a file of its non-zero blocks only (the bytes a dump sends: the
// baselines' input), or one block at a time to check what a restore wrote. A changed
// image is the same with a set of blocks given new (never zero) contents.
import fs from 'node:fs';
import type { Writable } from 'node:stream';
import { Xorshift128 } from './xorshift.js';

export const HALF_BLOCK = 4096;
const WORDS = HALF_BLOCK / 4;
const RANDOM_WORDS = WORDS / 2;
const PATTERN_WORDS = 4;
const BUFFER_BLOCKS = 2048; // 8 MiB per write

/** Blocks given new contents: ascending block numbers, and the seed of their new contents. */
export interface BlockChangeSet {
  blocks: Int32Array;
  seed: number;
}

export class HalfImage {
  private readonly changedSet: Set<number>;

  constructor(
    readonly blocks: number,
    readonly seed: number,
    readonly zeroFraction: number,
    readonly changes: BlockChangeSet | null = null,
  ) {
    this.changedSet = new Set(changes?.blocks ?? []);
  }

  get bytes(): number {
    return this.blocks * HALF_BLOCK;
  }

  /** The same image with `count` distinct blocks (picked by `seed`) given new contents. */
  withChanges(count: number, seed: number): HalfImage {
    const rng = new Xorshift128(seed);
    const taken = new Uint8Array(this.blocks);
    for (let n = 0; n < count; ) {
      const b = rng.below(this.blocks);
      if (!taken[b]) {
        taken[b] = 1;
        n++;
      }
    }
    const blocks = new Int32Array(count);
    for (let b = 0, n = 0; b < this.blocks; b++) if (taken[b]) blocks[n++] = b;
    return new HalfImage(this.blocks, this.seed, this.zeroFraction, { blocks, seed });
  }

  isZero(b: number): boolean {
    return !this.changedSet.has(b) && unit(mix(this.seed, b)) < this.zeroFraction;
  }

  /** Blocks that are not all zeros: what an import maps and a level-0 dump sends. */
  dataBlocks(): number {
    let n = 0;
    for (let b = 0; b < this.blocks; b++) if (!this.isZero(b)) n++;
    return n;
  }

  /** Block b's contents into words[at .. at + 1024). */
  fill(b: number, words: Uint32Array, at = 0): void {
    if (this.isZero(b)) {
      words.fill(0, at, at + WORDS);
      return;
    }
    const rng = new Xorshift128(mix(this.changedSet.has(b) ? this.changes!.seed : this.seed, b));
    rng.fill(words, at, at + RANDOM_WORDS);
    words[at] |= 1; // never all zero by chance
    const p = at + RANDOM_WORDS;
    rng.fill(words, p, p + PATTERN_WORDS);
    for (let n = PATTERN_WORDS; n < WORDS - RANDOM_WORDS; n *= 2) words.copyWithin(p + n, p, p + n);
  }

  /** The image (or, packed, only its non-zero blocks) in pieces of up to 8 MiB; each piece is valid until the next is asked for. */
  *pieces(packed: boolean): Generator<Uint8Array> {
    const words = new Uint32Array(BUFFER_BLOCKS * WORDS);
    const buf = new Uint8Array(words.buffer);
    for (let b = 0; b < this.blocks; ) {
      let n = 0;
      for (; n < BUFFER_BLOCKS && b < this.blocks; b++) {
        if (packed && this.isZero(b)) continue;
        this.fill(b, words, n * WORDS);
        n++;
      }
      if (n > 0) yield buf.subarray(0, n * HALF_BLOCK);
    }
  }

  /** Writes the non-zero blocks, in order, to a file (synced). Returns its size. */
  writePacked(file: string): number {
    const fd = fs.openSync(file, 'w');
    let bytes = 0;
    try {
      for (const piece of this.pieces(true)) {
        fs.writeSync(fd, piece);
        bytes += piece.length;
      }
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    return bytes;
  }

  /** Writes the whole image into a stream (a child's stdin), waiting for each piece to be taken before making the next; ends it. */
  async pipeTo(out: Writable): Promise<void> {
    for (const piece of this.pieces(false)) {
      // the piece's buffer is reused for the next one: wait until this one is consumed
      await new Promise<void>((resolve, reject) => out.write(piece, (err) => (err ? reject(err) : resolve())));
    }
    await new Promise<void>((resolve) => out.end(resolve));
  }

  /** Whether `got` (one block) holds block b's contents. */
  matches(b: number, got: Buffer, scratch = new Uint32Array(WORDS)): boolean {
    this.fill(b, scratch);
    return Buffer.from(scratch.buffer, scratch.byteOffset, HALF_BLOCK).equals(got);
  }
}

/** A well-mixed 32-bit hash of (seed, block number). */
function mix(seed: number, b: number): number {
  let t = (seed ^ Math.imul(b + 1, 0x9e3779b9)) | 0;
  t = Math.imul(t ^ (t >>> 16), 0x21f0aaad);
  t = Math.imul(t ^ (t >>> 15), 0x735a2d97);
  return (t ^ (t >>> 15)) >>> 0;
}

function unit(h: number): number {
  return h / 4294967296;
}
