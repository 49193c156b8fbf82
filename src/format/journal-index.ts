// The metadata journal of one consistency point. Plane blocks and snapshot table blocks
// live at fixed places in the volume's metadata area and are updated in place, so a CP
// first writes their new contents to free VBNs, then an index of them (this format),
// then the root record that names the index. Applying the journal in place after the
// root is written, and again on every open, is idempotent. Journal VBNs are in no plane:
// they stay reserved until the next CP commits.
//
// Index block layout (little-endian):
//    0  magic "IMGJ"
//    4  u32 entries in this block
//    8  u64 VBN of the next index block (0 = last)
//   16  entries, 24 bytes each:
//         u64 target metadata block (file block number)
//         u64 VBN holding the new contents
//         u32 crc32 of the contents
//         u32 zero
import { crc32 } from './crc32.js';

export const JOURNAL_MAGIC = 'IMGJ';
const HEADER = 16;
const ENTRY = 24;

export interface JournalEntry {
  target: number;
  vbn: number;
  crc: number;
}

export function entriesPerIndexBlock(blockSize: number): number {
  return Math.floor((blockSize - HEADER) / ENTRY);
}

export function encodeJournalIndex(blockSize: number, entries: JournalEntry[], next: number): Buffer {
  const b = Buffer.alloc(blockSize);
  if (entries.length > entriesPerIndexBlock(blockSize)) throw new RangeError('too many journal entries for one block');
  b.write(JOURNAL_MAGIC, 0, 'latin1');
  b.writeUInt32LE(entries.length, 4);
  b.writeBigUInt64LE(BigInt(next), 8);
  entries.forEach((e, i) => {
    const o = HEADER + i * ENTRY;
    b.writeBigUInt64LE(BigInt(e.target), o);
    b.writeBigUInt64LE(BigInt(e.vbn), o + 8);
    b.writeUInt32LE(e.crc >>> 0, o + 16);
  });
  return b;
}

/** Returns null when the block is not a journal index block. */
export function decodeJournalIndex(b: Buffer): { entries: JournalEntry[]; next: number } | null {
  if (b.toString('latin1', 0, 4) !== JOURNAL_MAGIC) return null;
  const n = b.readUInt32LE(4);
  if (n > entriesPerIndexBlock(b.length)) return null;
  const entries: JournalEntry[] = [];
  for (let i = 0; i < n; i++) {
    const o = HEADER + i * ENTRY;
    entries.push({ target: Number(b.readBigUInt64LE(o)), vbn: Number(b.readBigUInt64LE(o + 8)), crc: b.readUInt32LE(o + 16) });
  }
  return { entries, next: Number(b.readBigUInt64LE(8)) };
}

export function contentCrc(b: Uint8Array): number {
  return crc32(b);
}
