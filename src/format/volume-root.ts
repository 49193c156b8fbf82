// The volume root record: the one block written last in a consistency point. Two copies
// alternate (slot = generation % 2) at file blocks 0 and 1; on open the valid copy with
// the highest generation wins, so a torn root write leaves the previous CP current.
//
// Layout (little-endian, the rest of the block is zero):
//    0  magic "IMGSVOL1"              8 bytes
//    8  u32 format version (1)
//   12  u32 block size in bytes
//   16  u64 nblocks: VBN count N (VBNs 0..N-1; VBN 0 is never allocated: 0 means "none")
//   24  u64 logical disk size in bytes (a multiple of the block size)
//   32  u32 maxSnapshots: plane slots reserved for snapshots
//   36  u32 map depth: levels of the logical map tree (1 = the root is a leaf)
//   40  16 bytes volume uuid
//   56  f64 creation time (ms since epoch)
//   64  u64 generation: CP number, +1 per CP
//   72  f64 time of this CP (ms since epoch)
//   80  u64 VBN of the active logical map root (0 = empty disk)
//   88  u64 VBN of the first journal index block (0 = no journal)
//   96  u64 journal entries
//  104  u32 crc32 of the journal index blocks
//  108  u32 which mark-on-allocate plane records allocations (0 or 1)
//  112  u64 next snapshot id
//  120  u64 allocation cursor (VBN where the allocator resumes)
//  128  u64 blocks in the active plane
//  136  u64 mapped logical blocks
//  144  u64 mark-on-allocate swaps so far
//  152  u32 flags (bit 0: block device; bit 1: mirror destination; bit 2: mirror broken
//           off (see volume/volume-flags.ts); bit 3: every shadow snapshot is tainted;
//           bit 4: a protection destination's base; bit 5: a restore that rewrites the
//           active disk in place is unfinished)
//  156  u32 tainted shadow snapshots listed below (0..43)
//  160  u64 ids of shadow snapshots whose blocks this or the next CP reuses (see taint below)
//  508  u32 crc32 of bytes 0..507
import { crc32 } from './crc32.js';

export const ROOT_MAGIC = 'IMGSVOL1';
export const ROOT_VERSION = 1;
export const ROOT_RECORD_BYTES = 512;
/**
 * Flag bit: every shadow snapshot counts as tainted (more were than the list holds). Bits
 * 0 to 2, 4 and 5 are the volume's own (volume/volume-flags.ts: block device, mirror, broken off, protection base, unfinished restore).
 */
export const ROOT_FLAG_ALL_SHADOWS_TAINTED = 8;
/** Shadow snapshot ids the root record lists by id. */
export const ROOT_TAINT_SLOTS = 43;

export interface VolumeGeometry {
  blockSize: number;
  nblocks: number;
  logicalSize: number;
  maxSnapshots: number;
  mapDepth: number;
  uuid: string; // 32 hex digits
  createdMs: number;
  flags: number;
}

export interface RootRecord extends VolumeGeometry {
  generation: number;
  cpTimeMs: number;
  mapRoot: number;
  journalHead: number;
  journalCount: number;
  journalCrc: number;
  moaCurrent: number;
  nextSnapshotId: number;
  allocCursor: number;
  usedBlocks: number;
  mappedBlocks: number;
  moaSwaps: number;
  /**
   * Shadow snapshots whose blocks were taken for writing since the CP this root records:
   * written (durably) before the first block is overwritten in place, so a change set
   * that is aborted or killed leaves them marked as having had blocks reused, never as
   * intact when they are not. The next CP records the reuse counts and clears the list.
   */
  taintedShadows: number[];
  /** Every shadow snapshot is tainted (more were than the record lists). */
  allShadowsTainted: boolean;
}

function putU64(b: Buffer, off: number, v: number): void {
  b.writeBigUInt64LE(BigInt(v), off);
}
function getU64(b: Buffer, off: number): number {
  const v = b.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new RangeError('u64 out of range');
  return Number(v);
}

export function encodeRootRecord(r: RootRecord): Buffer {
  const b = Buffer.alloc(ROOT_RECORD_BYTES);
  b.write(ROOT_MAGIC, 0, 'latin1');
  b.writeUInt32LE(ROOT_VERSION, 8);
  b.writeUInt32LE(r.blockSize, 12);
  putU64(b, 16, r.nblocks);
  putU64(b, 24, r.logicalSize);
  b.writeUInt32LE(r.maxSnapshots, 32);
  b.writeUInt32LE(r.mapDepth, 36);
  Buffer.from(r.uuid, 'hex').copy(b, 40, 0, 16);
  b.writeDoubleLE(r.createdMs, 56);
  putU64(b, 64, r.generation);
  b.writeDoubleLE(r.cpTimeMs, 72);
  putU64(b, 80, r.mapRoot);
  putU64(b, 88, r.journalHead);
  putU64(b, 96, r.journalCount);
  b.writeUInt32LE(r.journalCrc >>> 0, 104);
  b.writeUInt32LE(r.moaCurrent, 108);
  putU64(b, 112, r.nextSnapshotId);
  putU64(b, 120, r.allocCursor);
  putU64(b, 128, r.usedBlocks);
  putU64(b, 136, r.mappedBlocks);
  putU64(b, 144, r.moaSwaps);
  const tainted = r.taintedShadows ?? [];
  const all = r.allShadowsTainted || tainted.length > ROOT_TAINT_SLOTS;
  const listed = all ? [] : tainted;
  b.writeUInt32LE(((r.flags & ~ROOT_FLAG_ALL_SHADOWS_TAINTED) | (all ? ROOT_FLAG_ALL_SHADOWS_TAINTED : 0)) >>> 0, 152);
  b.writeUInt32LE(listed.length, 156);
  listed.forEach((id, i) => putU64(b, 160 + 8 * i, id));
  b.writeUInt32LE(crc32(b.subarray(0, 508)), 508);
  return b;
}

export type RootDecode =
  | { ok: true; record: RootRecord }
  | { ok: false; reason: 'magic' | 'checksum' | 'range' }
  | { ok: false; reason: 'version'; version: number };

/** Decodes one root slot. Never throws: a slot that is not valid says why. */
export function decodeRootRecord(b: Buffer): RootDecode {
  if (b.length < ROOT_RECORD_BYTES || b.toString('latin1', 0, 8) !== ROOT_MAGIC) return { ok: false, reason: 'magic' };
  if (b.readUInt32LE(8) !== ROOT_VERSION) return { ok: false, reason: 'version', version: b.readUInt32LE(8) };
  if (crc32(b.subarray(0, 508)) !== b.readUInt32LE(508)) return { ok: false, reason: 'checksum' };
  try {
    const listed = b.readUInt32LE(156);
    if (listed > ROOT_TAINT_SLOTS) return { ok: false, reason: 'range' };
    const taintedShadows = Array.from({ length: listed }, (_, i) => getU64(b, 160 + 8 * i));
    return {
      ok: true,
      record: {
        blockSize: b.readUInt32LE(12),
        nblocks: getU64(b, 16),
        logicalSize: getU64(b, 24),
        maxSnapshots: b.readUInt32LE(32),
        mapDepth: b.readUInt32LE(36),
        uuid: b.toString('hex', 40, 56),
        createdMs: b.readDoubleLE(56),
        generation: getU64(b, 64),
        cpTimeMs: b.readDoubleLE(72),
        mapRoot: getU64(b, 80),
        journalHead: getU64(b, 88),
        journalCount: getU64(b, 96),
        journalCrc: b.readUInt32LE(104),
        moaCurrent: b.readUInt32LE(108),
        nextSnapshotId: getU64(b, 112),
        allocCursor: getU64(b, 120),
        usedBlocks: getU64(b, 128),
        mappedBlocks: getU64(b, 136),
        moaSwaps: getU64(b, 144),
        flags: b.readUInt32LE(152) & ~ROOT_FLAG_ALL_SHADOWS_TAINTED,
        taintedShadows,
        allShadowsTainted: (b.readUInt32LE(152) & ROOT_FLAG_ALL_SHADOWS_TAINTED) !== 0,
      },
    };
  } catch {
    return { ok: false, reason: 'range' };
  }
}
