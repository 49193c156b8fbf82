// A raw disk image for the import benchmarks: pseudo-random 4 KiB blocks (incompressible,
// all different) with a fraction of all-zero blocks, written once by a xorshift into a
// reused buffer; and a set of blocks to change in it, which can be applied and undone.
import fs from 'node:fs';
import { Xorshift128 } from './xorshift.js';

export const IMAGE_BLOCK = 4096;
const WORDS = IMAGE_BLOCK / 4;
const BUFFER_BLOCKS = 2048; // 8 MiB per write

export interface RandomImage {
  path: string;
  bytes: number;
  blocks: number;
  zeroBlocks: number;
}

export function writeRandomImage(file: string, bytes: number, zeroFraction: number, seed: number): RandomImage {
  const blocks = bytes / IMAGE_BLOCK;
  const rng = new Xorshift128(seed);
  const words = new Uint32Array(BUFFER_BLOCKS * WORDS);
  const buf = new Uint8Array(words.buffer);
  let zeroBlocks = 0;
  const fd = fs.openSync(file, 'w');
  try {
    for (let b = 0; b < blocks; b += BUFFER_BLOCKS) {
      const n = Math.min(BUFFER_BLOCKS, blocks - b);
      for (let k = 0; k < n; k++) {
        if (rng.float() < zeroFraction) {
          words.fill(0, k * WORDS, (k + 1) * WORDS);
          zeroBlocks++;
        } else {
          rng.fill(words, k * WORDS, (k + 1) * WORDS);
          words[k * WORDS] |= 1; // never all zero by chance
        }
      }
      fs.writeSync(fd, buf, 0, n * IMAGE_BLOCK, b * IMAGE_BLOCK);
    }
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return { path: file, bytes, blocks, zeroBlocks };
}

/** Distinct blocks of an image with new random contents, and their old contents to undo it. */
export class BlockChanges {
  private constructor(
    readonly image: RandomImage,
    /** Changed block numbers, ascending. */
    readonly blocks: Int32Array,
    private readonly before: Buffer,
    private readonly after: Buffer,
  ) {}

  static pick(image: RandomImage, fraction: number, seed: number): BlockChanges {
    const rng = new Xorshift128(seed);
    const count = Math.round(image.blocks * fraction);
    const taken = new Uint8Array(image.blocks);
    for (let n = 0; n < count; ) {
      const b = rng.below(image.blocks);
      if (!taken[b]) {
        taken[b] = 1;
        n++;
      }
    }
    const blocks = new Int32Array(count);
    for (let b = 0, n = 0; b < image.blocks; b++) if (taken[b]) blocks[n++] = b;
    const before = Buffer.alloc(count * IMAGE_BLOCK);
    const after = Buffer.alloc(count * IMAGE_BLOCK);
    const words = new Uint32Array(after.buffer, after.byteOffset, after.length / 4);
    rng.fill(words);
    for (let n = 0; n < count; n++) words[n * WORDS] |= 1;
    const fd = fs.openSync(image.path, 'r');
    try {
      blocks.forEach((b, n) => fs.readSync(fd, before, n * IMAGE_BLOCK, IMAGE_BLOCK, b * IMAGE_BLOCK));
    } finally {
      fs.closeSync(fd);
    }
    return new BlockChanges(image, blocks, before, after);
  }

  get count(): number {
    return this.blocks.length;
  }

  /** How many of the changed blocks were all zeros before (undoing unmaps them again). */
  get zeroBefore(): number {
    let n = 0;
    for (let k = 0; k < this.count; k++) {
      if (this.before.subarray(k * IMAGE_BLOCK, (k + 1) * IMAGE_BLOCK).every((x) => x === 0)) n++;
    }
    return n;
  }

  /** Writes the new contents ('after') or puts the old ones back ('before'). */
  apply(which: 'after' | 'before'): void {
    const src = which === 'after' ? this.after : this.before;
    const fd = fs.openSync(this.image.path, 'r+');
    try {
      this.blocks.forEach((b, n) => fs.writeSync(fd, src, n * IMAGE_BLOCK, IMAGE_BLOCK, b * IMAGE_BLOCK));
      fs.fdatasyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  }
}
