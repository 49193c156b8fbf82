// A checksum of a volume's map root block, recorded with each CP marker and compared by
// the shipper's watch for changes outside the journal (unjournaled-change.ts): a VBN
// freed is reused, so a root node rewritten by an unjournaled change can land on the
// very VBN the last marker names; its contents then differ.
import { crc32 } from '../format/crc32.js';
import type { Volume } from '../volume/volume.js';

/** crc32 of the map root block `read` fills (blockSize bytes). */
export function mapRootCrc(read: (buf: Buffer) => void, blockSize: number): number {
  const buf = Buffer.alloc(blockSize);
  read(buf);
  return crc32(buf);
}

/** The map root a CP or OPEN marker records, with the checksum of its block (none for an empty map). */
export function mapRootOf(vol: Volume): { mapRoot: number; rootCrc?: number } {
  const mapRoot = vol.rootRecord.mapRoot;
  return mapRoot === 0 ? { mapRoot } : { mapRoot, rootCrc: mapRootCrc((b) => vol.readBlock(mapRoot, b), vol.blockSize) };
}
