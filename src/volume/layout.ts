// Where everything lives in a volume file (or block device), in units of the block size:
//
//   block 0, 1          root record slots (alternating; see format/volume-root.ts)
//   tableStart..        snapshot table: maxSnapshots entries of 256 bytes
//   planeStart..        planes, each planeBlocks long, one bit per VBN:
//                         plane 0 active, 1 and 2 mark-on-allocate, 3+s snapshot slot s
//   dataStart..         the VBN space: VBN v is file block dataStart + v
//
// Plane and table blocks are updated in place through the CP journal; everything in the
// VBN space is written anywhere (never in place while a plane or the last CP holds it).
import { InvalidInputError } from '../core/errors.js';
import { SNAPSHOT_ENTRY_BYTES } from '../format/snapshot-entry.js';

export const PLANE_ACTIVE = 0;
export const PLANE_MOA = [1, 2] as const;
export const FIRST_SNAPSHOT_PLANE = 3;
export const MIN_BLOCK_SIZE = 4096;
export const MAX_BLOCK_SIZE = 1 << 20;
export const DEFAULT_BLOCK_SIZE = 4096;
export const DEFAULT_MAX_SNAPSHOTS = 255;

export class VolumeLayout {
  readonly bitsPerPlaneBlock: number;
  readonly wordsPerPlaneBlock: number;
  readonly planeBlocks: number;
  readonly tableBlocks: number;
  readonly tableStart = 2;
  readonly planeStart: number;
  readonly planeCount: number;
  readonly dataStart: number;
  readonly fileBlocks: number;

  constructor(readonly blockSize: number, readonly nblocks: number, readonly maxSnapshots: number) {
    this.bitsPerPlaneBlock = blockSize * 8;
    this.wordsPerPlaneBlock = blockSize / 4;
    this.planeBlocks = Math.ceil(nblocks / this.bitsPerPlaneBlock);
    this.tableBlocks = Math.ceil((maxSnapshots * SNAPSHOT_ENTRY_BYTES) / blockSize);
    this.planeStart = this.tableStart + this.tableBlocks;
    this.planeCount = FIRST_SNAPSHOT_PLANE + maxSnapshots;
    this.dataStart = this.planeStart + this.planeCount * this.planeBlocks;
    this.fileBlocks = this.dataStart + nblocks;
  }

  get fileBytes(): number {
    return this.fileBlocks * this.blockSize;
  }
  /** File block holding block i of plane p. */
  planeBlock(plane: number, i: number): number {
    return this.planeStart + plane * this.planeBlocks + i;
  }
  snapshotPlane(slot: number): number {
    return FIRST_SNAPSHOT_PLANE + slot;
  }
  vbnOffset(vbn: number): number {
    return (this.dataStart + vbn) * this.blockSize;
  }
  metaOffset(fileBlock: number): number {
    return fileBlock * this.blockSize;
  }

  /** The largest layout whose file fits in `bytes`. */
  static fitting(blockSize: number, bytes: number, maxSnapshots: number): VolumeLayout {
    const total = Math.floor(bytes / blockSize);
    const probe = new VolumeLayout(blockSize, 1, maxSnapshots);
    let n = total - probe.planeStart;
    for (let i = 0; i < 8; i++) {
      const planes = probe.planeCount * Math.ceil(Math.max(n, 1) / probe.bitsPerPlaneBlock);
      const next = total - probe.planeStart - planes;
      if (next === n) break;
      n = next;
    }
    while (n > 1 && new VolumeLayout(blockSize, n, maxSnapshots).fileBlocks > total) n--;
    if (n < 16) throw new InvalidInputError(`volume size ${bytes} bytes is too small for its metadata`, 'give a larger --volume-size or fewer --max-snapshots');
    return new VolumeLayout(blockSize, n, maxSnapshots);
  }
}

export function validateBlockSize(bs: number): number {
  if (!Number.isInteger(bs) || bs < MIN_BLOCK_SIZE || bs > MAX_BLOCK_SIZE || (bs & (bs - 1)) !== 0) {
    throw new InvalidInputError(`invalid block size ${bs}`, 'use a power of two from 4096 (4K) to 1048576 (1M)');
  }
  return bs;
}

/** Levels of a logical map tree with blockSize/8 entries per node covering `logicalBlocks`. */
/** Free blocks a volume of `nblocks` holds back for CP and snapshot journals (block-allocation.ts). */
export function journalPoolSizeFor(nblocks: number): number {
  return Math.min(64, Math.max(4, Math.floor(nblocks / 64)));
}

/**
 * Free blocks a volume of `nblocks` keeps for the CP that commits a change and never
 * gives to data (volume info shows them apart): the journal reserve, and at least what
 * the CP of a change within one chunk of the planes takes (the active and recording
 * planes' blocks, their index, and what one more allocation may dirty). More is kept
 * while a large change is uncommitted, and with shadow snapshots (block-allocation.ts).
 */
export function heldBackFor(nblocks: number): number {
  return Math.max(journalPoolSizeFor(nblocks), 6);
}

export function mapDepthFor(blockSize: number, logicalBlocks: number): number {
  const fanout = blockSize / 8;
  let depth = 1;
  let cover = fanout;
  while (cover < logicalBlocks) {
    cover *= fanout;
    depth++;
  }
  return depth;
}
