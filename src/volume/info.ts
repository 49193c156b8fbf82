// What `volume info` reports: geometry, usage and the last CP, from the root record and
// one pass over the planes for the free count.
import type { Volume } from './volume.js';

export interface VolumeInfo {
  path: string;
  uuid: string;
  blockSize: number;
  logicalSize: number;
  logicalBlocks: number;
  nblocks: number;
  volumeBytes: number;
  metadataBytes: number;
  usedBlocks: number;
  mappedBlocks: number;
  /** Blocks a change may take (not the ones held back). */
  freeBlocks: number;
  /** Free blocks held back for CP and snapshot journals: never given to data. */
  heldBackBlocks: number;
  /** Blocks only shadow snapshots hold: the allocator reuses them when no free block is left. */
  reusableBlocks: number;
  snapshots: number;
  maxSnapshots: number;
  generation: number;
  lastCp: string;
  created: string;
  markOnAllocate: { recording: number; swaps: number; marked: [number, number] };
  blockDevice: boolean;
  /** "destination": a mirror destination (read-only); "broken": one broken off (writable); null: neither. */
  mirror: 'destination' | 'broken' | null;
  /** True for a protection destination's base volume (read-only but to the destination). */
  protectionBase: boolean;
  /** A restore that rewrites the active disk in place stopped before its last CP (only a restore opens it until it is run again). */
  restoreUnfinished: boolean;
}

export function volumeInfo(vol: Volume): VolumeInfo {
  const r = vol.rootRecord;
  const l = vol.layout;
  return {
    path: vol.path,
    uuid: r.uuid,
    blockSize: r.blockSize,
    logicalSize: r.logicalSize,
    logicalBlocks: vol.logicalBlocks,
    nblocks: r.nblocks,
    volumeBytes: l.fileBytes,
    metadataBytes: l.dataStart * l.blockSize,
    usedBlocks: r.usedBlocks,
    mappedBlocks: r.mappedBlocks,
    freeBlocks: vol.countFree(),
    heldBackBlocks: vol.heldBackBlocks,
    reusableBlocks: vol.countReusable(),
    snapshots: vol.snapshots().length,
    maxSnapshots: r.maxSnapshots,
    generation: r.generation,
    lastCp: new Date(r.cpTimeMs).toISOString(),
    created: new Date(r.createdMs).toISOString(),
    markOnAllocate: { recording: r.moaCurrent, swaps: r.moaSwaps, marked: [vol.countPlane(1), vol.countPlane(2)] },
    blockDevice: (r.flags & 1) !== 0,
    mirror: vol.mirrorFlags.mirror ? (vol.mirrorFlags.broken ? 'broken' : 'destination') : null,
    protectionBase: vol.protectBase,
    restoreUnfinished: vol.restoreUnfinished,
  };
}
