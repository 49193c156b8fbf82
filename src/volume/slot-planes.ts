// Snapshot plane slots written in place. A slot that no committed state references (empty
// in the table, and not emptied since the last CP) is written directly to the file, not
// through the journal: a crash leaves it unreferenced, and the table entry that names it
// is journaled with a later CP. Afterwards the metadata store forgets what it cached of
// the slot's plane, so reads see the new contents.
import type { BlockFile } from './block-file.js';
import { PLANE_ACTIVE, type VolumeLayout } from './layout.js';
import type { MetadataStore } from './metadata-store.js';
import { PlaneScanner } from './plane-scanner.js';
import { allZero } from './plane-edit.js';

export class SlotPlanes {
  constructor(private readonly file: BlockFile, private readonly layout: VolumeLayout, private readonly meta: MetadataStore) {}

  /** Copies the active plane into the plane of `slot` (a snapshot), writing only the blocks that differ from what the slot holds. */
  copyActiveTo(slot: number): void {
    const plane = this.layout.snapshotPlane(slot);
    const active = new PlaneScanner(this.file, this.layout, this.meta, PLANE_ACTIVE);
    const old = new PlaneScanner(this.file, this.layout, this.meta, plane);
    for (let i = 0; i < this.layout.planeBlocks; i++) {
      const src = active.words(i);
      const dst = old.words(i);
      if (active.isZero(src) && old.isZero(dst)) continue; // both zeros, known without a scan
      let same = true;
      for (let k = 0; k < src.length; k++) if (src[k] !== dst[k]) { same = false; break; }
      if (!same) this.file.write(new Uint8Array(src.buffer, src.byteOffset, src.byteLength), this.layout.metaOffset(this.layout.planeBlock(plane, i)));
    }
    this.forget(slot);
  }

  /** Writes plane block `chunk` of `slot` (the caller checked the slot is free). */
  write(slot: number, chunk: number, data: Uint8Array): void {
    const m = this.layout.planeBlock(this.layout.snapshotPlane(slot), chunk);
    this.file.write(data, this.layout.metaOffset(m));
    this.meta.forget(m, 1); // what the store knew of the block (zeros, a cached copy) is no more
  }

  /** Zeroes the plane blocks of `slot` not in `written` (left over from an older snapshot). */
  clearExcept(slot: number, written: Set<number>): void {
    const plane = this.layout.snapshotPlane(slot);
    const zero = Buffer.alloc(this.layout.blockSize);
    // read in windows (blocks the store knows are zeros not at all); the slot is free, so
    // no layer above the file holds its blocks
    const scan = new PlaneScanner(this.file, this.layout, this.meta, plane);
    for (let c = 0; c < this.layout.planeBlocks; c++) {
      if (written.has(c)) continue;
      const w = scan.words(c);
      if (scan.isZero(w) || allZero(w)) continue;
      this.file.write(zero, this.layout.metaOffset(this.layout.planeBlock(plane, c)));
    }
    this.forget(slot);
  }

  /** Drops what the metadata store caches of the plane of `slot`. */
  forget(slot: number): void {
    this.meta.forget(this.layout.planeBlock(this.layout.snapshotPlane(slot), 0), this.layout.planeBlocks);
  }
}
