// The occupancy bitmap (Volume.occupiedWords: what the committed state or this process
// holds) read a chunk at a time, for walks over incoming VBNs (restore, mirror transfers)
// that mostly rise: one chunk is computed and kept until a VBN of another comes.
import type { Volume } from './volume.js';

export class OccupancyCursor {
  private chunk = -1;
  private words: Uint32Array = new Uint32Array(0);

  constructor(private readonly vol: Volume) {}

  /** True when the volume holds VBN v (or it was marked here since its chunk was read). */
  has(v: number): boolean {
    const b = this.bit(v);
    return (this.words[b >>> 5] & (1 << (b & 31))) !== 0;
  }

  /** Counts v as held from now on (the caller reserved or wrote it). */
  mark(v: number): void {
    const b = this.bit(v);
    this.words[b >>> 5] |= 1 << (b & 31);
  }

  private bit(v: number): number {
    const bits = this.vol.layout.bitsPerPlaneBlock;
    const c = Math.floor(v / bits);
    if (c !== this.chunk) {
      this.words = this.vol.occupiedWords(c);
      this.chunk = c;
    }
    return v % bits;
  }
}
