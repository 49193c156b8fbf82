// The two mark-on-allocate planes: one records every block added to the active file
// system while the other is being shipped (mirroring); after a transfer they swap and the
// shipped one is cleared. Which one records is in the root record (moaCurrent), so a
// swap, like every plane change here, takes effect with the next CP.
import type { RootRecord } from '../format/volume-root.js';
import { PLANE_MOA, type VolumeLayout } from './layout.js';
import type { MetadataStore } from './metadata-store.js';
import { allZero, clearPlane, orIntoPlaneBlock } from './plane-edit.js';
import type { SparseBitmap } from './sparse-bitmap.js';

/** What the planes need of the volume. */
export interface MarkOnAllocateHost {
  readonly meta: MetadataStore;
  readonly layout: VolumeLayout;
  /** The current root record (a CP replaces it). */
  root(): RootRecord;
  /** Something changed for the next CP. */
  changed(): void;
}

export class MarkOnAllocate {
  constructor(private readonly h: MarkOnAllocateHost) {}

  /** The plane that records allocations now. */
  recording(): number {
    return PLANE_MOA[this.h.root().moaCurrent];
  }

  swap(): { shipping: number; recording: number } {
    const shipping = this.recording();
    const root = this.h.root();
    root.moaCurrent ^= 1;
    root.moaSwaps++;
    this.h.changed();
    return { shipping, recording: this.recording() };
  }

  clear(plane: number): void {
    if (plane !== PLANE_MOA[0] && plane !== PLANE_MOA[1]) throw new Error('not a mark-on-allocate plane');
    clearPlane(this.h.meta, this.h.layout, plane);
    this.h.changed();
  }

  /** Sets the recording plane's bits of `vbns`. */
  record(vbns: SparseBitmap): void {
    const { meta, layout } = this.h;
    const plane = this.recording();
    for (let c = 0; c * layout.bitsPerPlaneBlock < layout.nblocks; c++) {
      const x = vbns.chunk(c);
      if (x && !allZero(x) && orIntoPlaneBlock(meta, layout.planeBlock(plane, c), x)) this.h.changed();
    }
  }

  /** ORs plane `from` into plane `into`. */
  merge(from: number, into: number): void {
    const { meta, layout } = this.h;
    for (let c = 0; c < layout.planeBlocks; c++) {
      const src = meta.read(layout.planeBlock(from, c)).words;
      if (!meta.isZero(src) && !allZero(src) && orIntoPlaneBlock(meta, layout.planeBlock(into, c), src)) this.h.changed();
    }
  }
}
