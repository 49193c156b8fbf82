// A checksum of a volume's map root block, recorded with each CP marker and compared by
// the shipper's watch for changes outside the journal (unjournaled-change.ts): a VBN
// freed is reused, so a root node rewritten by an unjournaled change can land on the
// very VBN the last marker names; its contents then differ.
import { crc32 } from '../format/crc32.js';

/** crc32 of the map root block `read` fills (blockSize bytes). */
export function mapRootCrc(read: (buf: Buffer) => void, blockSize: number): number {
  const buf = Buffer.alloc(blockSize);
  read(buf);
  return crc32(buf);
}
