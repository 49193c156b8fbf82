// Reads a plane front to back in windows of about 1 MiB (one pread each, into a reused
// buffer) instead of block by block through the metadata cache: a pass over a 1 TiB
// volume's plane is 32 MiB, and evaluating a storage image, counting free blocks or
// copying a plane for a snapshot are all such passes. Blocks that differ from the file
// (changed since the last CP, or in an unapplied journal) come from the metadata store,
// and so do blocks it knows are zeros (not read again; the shared block of zeros, which
// isZero() tells apart at once).
import type { BlockFile } from './block-file.js';
import type { VolumeLayout } from './layout.js';
import type { MetadataStore } from './metadata-store.js';

const WINDOW_BYTES = 1 << 20;

export class PlaneScanner {
  private start = -1;
  private count = 0;
  private readonly window: Buffer;
  private readonly per: number;

  constructor(private readonly file: BlockFile, private readonly layout: VolumeLayout, private readonly meta: MetadataStore, readonly plane: number) {
    this.per = Math.max(1, Math.floor(WINDOW_BYTES / layout.blockSize));
    this.window = Buffer.allocUnsafeSlow(this.per * layout.blockSize);
  }

  /** The words zero blocks are given as (isZero() tells them apart without a scan). */
  get zero(): Uint32Array {
    return this.meta.zeroWords;
  }

  /** Whether `words` (from words()) are a block of zeros known as such; false does not mean non-zero. */
  isZero(words: Uint32Array): boolean {
    return this.meta.isZero(words);
  }

  /** Words of plane block c: valid until the scanner moves to another window. Blocks the store knows are zeros are not read. */
  words(c: number): Uint32Array {
    const m = this.layout.planeBlock(this.plane, c);
    const o = this.meta.override(m);
    if (o) return o;
    if (this.meta.isKnownZero(m)) return this.meta.zeroWords;
    if (c < this.start || c >= this.start + this.count) {
      this.start = c;
      // the window: up to WINDOW_BYTES from c, stopping before a block known to be zeros
      let n = 1;
      const most = Math.min(this.per, this.layout.planeBlocks - c);
      while (n < most && !this.meta.isKnownZero(m + n)) n++;
      this.count = n;
      const bs = this.layout.blockSize;
      this.file.read(this.window.subarray(0, n * bs), this.layout.metaOffset(m));
      const zero = this.zeroBuf ??= Buffer.alloc(bs);
      for (let i = 0; i < n; i++) if (this.window.subarray(i * bs, (i + 1) * bs).equals(zero)) this.meta.noteZero(m + i);
      if (this.meta.isKnownZero(m)) return this.meta.zeroWords;
    }
    const w = this.layout.wordsPerPlaneBlock;
    return new Uint32Array(this.window.buffer, this.window.byteOffset + (c - this.start) * this.layout.blockSize, w);
  }

  private zeroBuf: Buffer | null = null;
}
