// One entry of the snapshot table. Entry s describes the snapshot whose plane is stored in
// plane slot s; the table lives in the metadata area and changes through the journal.
//
// Layout (256 bytes, little-endian):
//    0  u8  in use (1) or free (0)
//    1  u8  flags: bit 0 shadow, bit 1 master, bit 2 restored (brought by a restore from
//           the source's streams; versions that do not know it leave it out when they
//           rewrite the entry, which only makes a later restore refuse what it could drop)
//    2  u16 zero
//    4  u32 crc32 of bytes 8..255
//    8  u64 snapshot id (increasing: the order snapshots were taken)
//   16  f64 creation time (ms since epoch)
//   24  u64 VBN of the saved logical map root
//   32  u64 CP generation the snapshot is the state of
//   40  u64 blocks in its plane when taken
//   48  u64 mapped logical blocks when taken
//   56  u64 blocks reused since (shadow snapshots only; > 0 means no longer consistent)
//   64  u8  name length, 65..128 name (UTF-8, at most 64 bytes)
import { crc32 } from './crc32.js';

export const SNAPSHOT_ENTRY_BYTES = 256;
export const FLAG_SHADOW = 1;
export const FLAG_MASTER = 2;
export const FLAG_RESTORED = 4;

export interface SnapshotEntry {
  slot: number;
  id: number;
  name: string;
  shadow: boolean;
  master: boolean;
  /** Brought by a restore: a snapshot of the source volume, not one taken on this one. */
  restored?: boolean;
  createdMs: number;
  mapRoot: number;
  generation: number;
  blocks: number;
  mappedBlocks: number;
  reusedBlocks: number;
}

export function encodeSnapshotEntry(e: SnapshotEntry | null): Buffer {
  const b = Buffer.alloc(SNAPSHOT_ENTRY_BYTES);
  if (!e) return b;
  b[0] = 1;
  b[1] = (e.shadow ? FLAG_SHADOW : 0) | (e.master ? FLAG_MASTER : 0) | (e.restored ? FLAG_RESTORED : 0);
  b.writeBigUInt64LE(BigInt(e.id), 8);
  b.writeDoubleLE(e.createdMs, 16);
  b.writeBigUInt64LE(BigInt(e.mapRoot), 24);
  b.writeBigUInt64LE(BigInt(e.generation), 32);
  b.writeBigUInt64LE(BigInt(e.blocks), 40);
  b.writeBigUInt64LE(BigInt(e.mappedBlocks), 48);
  b.writeBigUInt64LE(BigInt(e.reusedBlocks), 56);
  const name = Buffer.from(e.name, 'utf8');
  b[64] = name.length;
  name.copy(b, 65, 0, 64);
  b.writeUInt32LE(crc32(b.subarray(8)), 4);
  return b;
}

/** null for a free entry; throws RangeError for a damaged one. */
export function decodeSnapshotEntry(b: Buffer, slot: number): SnapshotEntry | null {
  if (b[0] === 0) return null;
  if (b[0] !== 1 || crc32(b.subarray(8, SNAPSHOT_ENTRY_BYTES)) !== b.readUInt32LE(4)) {
    throw new RangeError(`snapshot table entry ${slot} is damaged`);
  }
  return {
    slot,
    id: Number(b.readBigUInt64LE(8)),
    shadow: (b[1] & FLAG_SHADOW) !== 0,
    master: (b[1] & FLAG_MASTER) !== 0,
    ...((b[1] & FLAG_RESTORED) !== 0 ? { restored: true } : {}),
    createdMs: b.readDoubleLE(16),
    mapRoot: Number(b.readBigUInt64LE(24)),
    generation: Number(b.readBigUInt64LE(32)),
    blocks: Number(b.readBigUInt64LE(40)),
    mappedBlocks: Number(b.readBigUInt64LE(48)),
    reusedBlocks: Number(b.readBigUInt64LE(56)),
    name: b.toString('utf8', 65, 65 + b[64]),
  };
}
