// Test images: deterministic pseudo-random block contents with zero blocks mixed in, and
// in-memory image sources/sinks for the volume library.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ImageSource } from '../../src/volume/import.js';

export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

/** An image of `blocks` blocks: about `zeroFraction` of them zero, the rest random. */
export function randomImage(blocks: number, bs: number, seed: number, zeroFraction = 0.3): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(blocks * bs);
  for (let i = 0; i < blocks; i++) {
    if (r() < zeroFraction) continue;
    const v = Math.floor(r() * 2 ** 32);
    b.writeUInt32LE(v, i * bs);
    b.writeUInt32LE(i, i * bs + 4);
    b.fill(v & 0xff, i * bs + 8, i * bs + 64);
  }
  return b;
}

/** Random (incompressible) blocks in `fraction` of the disk, where the seed says: streams of it take many parts. */
export function incompressibleImage(blocks: number, bs: number, seed: number, fraction = 0.6): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(blocks * bs);
  for (let i = 0; i < blocks; i++) if (r() < fraction) randomBytes(bs).copy(b, i * bs);
  return b;
}

/** Changes `count` random blocks of `img` in place (some to zero, some to new content). */
export function mutate(img: Buffer, bs: number, count: number, seed: number): void {
  const r = rng(seed);
  const blocks = img.length / bs;
  for (let k = 0; k < count; k++) {
    const i = Math.floor(r() * blocks);
    if (r() < 0.2) img.fill(0, i * bs, (i + 1) * bs);
    else {
      img.writeUInt32LE(Math.floor(r() * 2 ** 32), i * bs + 8);
      img.writeUInt32LE(seed, i * bs + 12);
    }
  }
}

export function memorySource(img: Buffer, piece = 100_000): ImageSource {
  return {
    name: 'memory',
    size: img.length,
    rereadable: true,
    async *open() {
      for (let o = 0; o < img.length; o += piece) yield img.subarray(o, Math.min(img.length, o + piece));
    },
  };
}

export async function exportToBuffer(write: (sink: { write(b: Buffer): void }) => Promise<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  await write({ write: (b) => void parts.push(Buffer.from(b)) });
  return Buffer.concat(parts);
}

export function tempDir(prefix = 'imgstream-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}
