// Write-anywhere allocation. A VBN is free when no plane holds it (active, any snapshot),
// it was not released since the last CP (the last CP may still reference it), and it is
// not reserved (journal blocks). Blocks held only by shadow snapshots are reused last:
// first every truly free block, then shadow blocks (the caller clears their bits).
//
// The allocator walks one chunk (one plane block's worth of VBNs) at a time from a
// cursor, so allocating k blocks costs about k/chunkBits plane-block reads.
import { VolumeFullError } from '../core/errors.js';
import { SparseBitmap } from './sparse-bitmap.js';

export interface FreeSpaceView {
  readonly nblocks: number;
  readonly wordsPerChunk: number;
  /** Words of chunk c of every plane that pins blocks (active and regular snapshots). */
  pinning(c: number): Uint32Array[];
  /** Words of chunk c of every shadow snapshot plane. */
  shadows(c: number): Uint32Array[];
  readonly releasedSinceCp: SparseBitmap;
  readonly reserved: SparseBitmap;
}

export interface Allocation {
  vbn: number;
  /** True when the block was held by a shadow snapshot: its bits must be cleared. */
  fromShadow: boolean;
}

export class Allocator {
  private readonly chunks: number;
  private readonly bitsPerChunk: number;
  private maskChunk = -1;
  private mask: Uint32Array;
  private shadowMaskChunk = -1;
  private shadowMask: Uint32Array;
  private wordCursor = 0;
  private freeExhausted = false;

  constructor(private readonly view: FreeSpaceView, public cursor: number) {
    this.bitsPerChunk = view.wordsPerChunk * 32;
    this.chunks = Math.ceil(view.nblocks / this.bitsPerChunk);
    this.mask = new Uint32Array(view.wordsPerChunk);
    this.shadowMask = new Uint32Array(view.wordsPerChunk);
    if (!(cursor > 0 && cursor < view.nblocks)) this.cursor = 1;
  }

  /** Forget computed masks: planes changed under us (after a CP or a snapshot delete). */
  reset(): void {
    this.maskChunk = -1;
    this.shadowMaskChunk = -1;
    this.freeExhausted = false;
  }

  /** A block freed during this CP that the last CP did not reference can be handed out again. */
  returned(vbn: number): void {
    const c = Math.floor(vbn / this.bitsPerChunk);
    if (c === this.maskChunk) {
      const b = vbn % this.bitsPerChunk;
      this.mask[b >>> 5] |= 1 << (b & 31);
    }
  }

  private computeMask(c: number, withShadows: boolean): Uint32Array {
    const out = withShadows ? this.shadowMask : this.mask;
    const w = this.view.wordsPerChunk;
    out.fill(0xffffffff);
    for (const p of this.view.pinning(c)) for (let i = 0; i < w; i++) out[i] &= ~p[i];
    if (!withShadows) for (const p of this.view.shadows(c)) for (let i = 0; i < w; i++) out[i] &= ~p[i];
    const r = this.view.releasedSinceCp.chunk(c);
    if (r) for (let i = 0; i < w; i++) out[i] &= ~r[i];
    const s = this.view.reserved.chunk(c);
    if (s) for (let i = 0; i < w; i++) out[i] &= ~s[i];
    if (c === 0) out[0] &= ~1; // VBN 0 means "none"
    const end = this.view.nblocks - c * this.bitsPerChunk;
    if (end < this.bitsPerChunk) {
      for (let i = 0; i < w; i++) {
        const base = i * 32;
        if (base >= end) out[i] = 0;
        else if (base + 32 > end) out[i] &= (1 << (end - base)) - 1;
      }
    }
    return out;
  }

  private takeFrom(mask: Uint32Array, c: number, fromWord: number): number {
    for (let i = fromWord; i < mask.length; i++) {
      const x = mask[i];
      if (x !== 0) {
        const bit = 31 - Math.clz32(x & -x);
        mask[i] = x & (x - 1);
        this.wordCursor = i;
        return c * this.bitsPerChunk + i * 32 + bit;
      }
    }
    return -1;
  }

  allocate(): Allocation {
    if (!this.freeExhausted) {
      const v = this.scan(false);
      if (v >= 0) return { vbn: v, fromShadow: false };
      this.freeExhausted = true;
    }
    const v = this.scan(true);
    if (v >= 0) return { vbn: v, fromShadow: true };
    throw new VolumeFullError('volume is full: no free block left', 'delete snapshots you no longer need, or create a larger volume');
  }

  private scan(withShadows: boolean): number {
    const start = Math.floor(this.cursor / this.bitsPerChunk);
    for (let k = 0; k <= this.chunks; k++) {
      const c = (start + k) % this.chunks;
      let mask: Uint32Array;
      if (withShadows) {
        if (this.shadowMaskChunk !== c) {
          this.computeMask(c, true);
          this.shadowMaskChunk = c;
        }
        mask = this.shadowMask;
      } else {
        if (this.maskChunk !== c) {
          this.computeMask(c, false);
          this.maskChunk = c;
          this.wordCursor = 0;
        }
        mask = this.mask;
      }
      const v = this.takeFrom(mask, c, withShadows ? 0 : this.wordCursor);
      if (v >= 0) {
        this.cursor = v + 1 < this.view.nblocks ? v + 1 : 1;
        return v;
      }
      if (!withShadows) this.wordCursor = 0;
    }
    return -1;
  }
}
