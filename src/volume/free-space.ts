// The free space of an open volume: which VBNs are held and by what. A VBN is held by a
// plane (the active file system, a snapshot, a snapshot deleted since the last CP), by
// the last CP (released from the active plane since), or by this process (reserved:
// journal blocks, a restore's incoming blocks). Blocks only shadow snapshots hold are
// free to the allocator as a last resort. This is the allocator's view (allocator.ts)
// and the counts `volume info` shows.
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { FreeSpaceView } from './allocator.js';
import { heldBackFor, PLANE_ACTIVE, type VolumeLayout } from './layout.js';
import { countOnlyIn, countUnion } from './plane-census.js';
import type { PlaneScanner } from './plane-scanner.js';
import { SparseBitmap } from './sparse-bitmap.js';

/** What the free space is computed from: the volume's planes and snapshot table. */
export interface PlaneHolders {
  /** The snapshots in the table (regular and shadow). */
  snapshots(): SnapshotEntry[];
  /** Slots of snapshots deleted since the last CP: their planes still pin their blocks. */
  readonly departedSlots: ReadonlySet<number>;
  planeWords(plane: number, chunk: number): Uint32Array;
  /** Whether words from planeWords() are the shared block of zeros. */
  isZeroWords(words: Uint32Array): boolean;
  scanner(plane: number): PlaneScanner;
  /** Blocks in the active plane. */
  usedBlocks(): number;
}

export class FreeSpace implements FreeSpaceView {
  readonly nblocks: number;
  readonly wordsPerChunk: number;
  /** VBNs the last CP references that left the active plane since: not reusable until the next CP. */
  readonly releasedSinceCp: SparseBitmap;
  /** VBNs in no plane that must not be handed out (journal blocks being written). */
  readonly reserved: SparseBitmap;

  constructor(private readonly layout: VolumeLayout, private readonly holders: PlaneHolders) {
    this.nblocks = layout.nblocks;
    this.wordsPerChunk = layout.wordsPerPlaneBlock;
    this.releasedSinceCp = new SparseBitmap(this.wordsPerChunk);
    this.reserved = new SparseBitmap(this.wordsPerChunk);
  }

  /** Planes whose blocks the allocator never takes: active, regular snapshots, snapshots deleted since the last CP. */
  private pinningPlanes(): number[] {
    const h = this.holders;
    return [
      PLANE_ACTIVE,
      ...h.snapshots().filter((s) => !s.shadow).map((s) => this.layout.snapshotPlane(s.slot)),
      ...[...h.departedSlots].map((slot) => this.layout.snapshotPlane(slot)),
    ];
  }

  private shadowPlanes(): number[] {
    return this.holders.snapshots().filter((s) => s.shadow).map((s) => this.layout.snapshotPlane(s.slot));
  }

  /** Planes of the committed state: active and every snapshot in the table. */
  private committedPlanes(): number[] {
    return [PLANE_ACTIVE, ...this.holders.snapshots().map((s) => this.layout.snapshotPlane(s.slot))];
  }

  pinning(c: number): Uint32Array[] {
    return this.pinningPlanes().map((p) => this.holders.planeWords(p, c));
  }

  shadows(c: number): Uint32Array[] {
    return this.shadowPlanes().map((p) => this.holders.planeWords(p, c));
  }

  /** VBNs of chunk c that the committed state (any plane) or this process holds. */
  occupiedWords(c: number): Uint32Array {
    const w = this.layout.wordsPerPlaneBlock;
    const out = new Uint32Array(w);
    for (const p of this.committedPlanes()) {
      const x = this.holders.planeWords(p, c);
      if (this.holders.isZeroWords(x)) continue;
      for (let i = 0; i < w; i++) out[i] |= x[i];
    }
    for (const bm of [this.releasedSinceCp, this.reserved]) {
      const x = bm.chunk(c);
      if (x) for (let i = 0; i < w; i++) out[i] |= x[i];
    }
    if (c === 0) out[0] |= 1;
    return out;
  }

  /** Blocks only shadow snapshots hold (see Volume.countReusable). */
  countReusable(): number {
    const shadows = this.shadowPlanes();
    if (shadows.length === 0) return 0;
    const scan = (p: number) => this.holders.scanner(p);
    return countOnlyIn(this.layout, shadows.map(scan), this.pinningPlanes().map(scan), this.releasedSinceCp);
  }

  /**
   * Blocks a change may take: those no plane holds, less the ones held back for CP and
   * snapshot journals (no plane records those either; the allocator fills that reserve
   * before it hands out a block). One pass over all planes.
   */
  countFree(): number {
    const planes = this.committedPlanes().map((p) => this.holders.scanner(p));
    const unheld = this.layout.nblocks - 1 - countUnion(this.layout, planes, this.releasedSinceCp); // VBN 0 is never allocated
    return Math.max(0, unheld - this.heldBack);
  }

  /** Free blocks held back for the CP's journal (layout.ts). */
  get heldBack(): number {
    return heldBackFor(this.layout.nblocks);
  }

  /** A lower bound of the free blocks without a pass over the planes: snapshots may share blocks with each other and with the active file system. */
  lowerBound(): number {
    const held = this.holders.snapshots().reduce((a, s) => a + s.blocks, this.holders.usedBlocks());
    return Math.max(0, this.layout.nblocks - 1 - held - this.releasedSinceCp.size - Math.max(this.reserved.size, this.heldBack));
  }
}
