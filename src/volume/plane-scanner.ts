// Reads a plane front to back in windows of about 1 MiB (one pread each, into a reused
// buffer) instead of block by block through the metadata cache: a pass over a 1 TiB
// volume's plane is 32 MiB, and evaluating a storage image, counting free blocks or
// copying a plane for a snapshot are all such passes. Blocks that differ from the file
// (changed since the last CP, or in an unapplied journal) come from the metadata store.
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

  /** Words of plane block c: valid until the scanner moves to another window. */
  words(c: number): Uint32Array {
    const m = this.layout.planeBlock(this.plane, c);
    const o = this.meta.override(m);
    if (o) return o;
    if (c < this.start || c >= this.start + this.count) {
      this.start = c;
      this.count = Math.min(this.per, this.layout.planeBlocks - c);
      this.file.read(this.window.subarray(0, this.count * this.layout.blockSize), this.layout.metaOffset(m));
    }
    const w = this.layout.wordsPerPlaneBlock;
    return new Uint32Array(this.window.buffer, this.window.byteOffset + (c - this.start) * this.layout.blockSize, w);
  }
}
