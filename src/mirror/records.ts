// Record payloads of a mirror transfer (protocol.ts): the PLANE and DATA payloads of the
// image stream format, and their ghosts (the same without block contents) for records
// resent on resume; and the chain over the records' crc32s.
import { createHash } from 'node:crypto';
import { crc32 } from '../format/crc32.js';
import { decodeData, decodeMapDeltas, decodePlane, StreamFormatError, type MapDelta } from '../format/image-stream.js';

export type RecordIndex =
  | { kind: 'plane'; snapshotIndex: number; chunks: number[]; data: Buffer | null }
  | { kind: 'data'; vbns: number[]; data: Buffer | null }
  | { kind: 'mapdelta'; nodes: MapDelta[] };

/** A record's ghost: its layout up to the block contents (the count and VBNs, or the snapshot index, count and chunks). */
export function ghostOf(kind: 'plane' | 'data' | 'mapdelta', payload: Buffer): Buffer {
  if (kind === 'mapdelta') return payload; // small: its ghost is itself
  if (kind === 'data') return payload.subarray(0, 8 + payload.readUInt32LE(0) * 8);
  return payload.subarray(0, 8 + payload.readUInt32LE(4) * 4);
}

export function decodeRecordIndex(kind: string, payload: Buffer, blockSize: number, ghost: boolean): RecordIndex {
  if (kind === 'data') {
    if (!ghost) {
      const d = decodeData(payload, blockSize);
      return { kind, vbns: d.vbns, data: d.data };
    }
    const n = payload.length >= 8 ? payload.readUInt32LE(0) : -1;
    if (n < 0 || payload.length !== 8 + n * 8) throw new StreamFormatError('damaged DATA ghost');
    const vbns = Array.from({ length: n }, (_, i) => payload.readUInt32LE(8 + i * 8) + payload.readUInt32LE(12 + i * 8) * 4294967296);
    return { kind, vbns, data: null };
  }
  if (kind === 'plane') {
    if (!ghost) {
      const p = decodePlane(payload, blockSize);
      return { kind, snapshotIndex: p.snapshotIndex, chunks: p.chunks, data: p.data };
    }
    const n = payload.length >= 8 ? payload.readUInt32LE(4) : -1;
    if (n < 0 || payload.length !== 8 + n * 4) throw new StreamFormatError('damaged PLANE ghost');
    return { kind, snapshotIndex: payload.readUInt32LE(0), chunks: Array.from({ length: n }, (_, i) => payload.readUInt32LE(8 + i * 4)), data: null };
  }
  if (kind === 'mapdelta') return { kind, nodes: decodeMapDeltas(payload, blockSize) };
  throw new StreamFormatError(`unknown record kind ${kind}`);
}

/** The chain over a transfer's records: SHA-256 of the previous link and the record's index, kind, length and crc32. */
export const hashChain = {
  start(): string {
    return createHash('sha256').update('imgstream-mirror-chain-2').digest('hex');
  },
  add(chain: string, rec: number, kind: string, length: number, crc: number): string {
    return createHash('sha256').update(chain).update(`${rec} ${kind} ${length} ${crc >>> 0}`).digest('hex');
  },
};

/** A record's crc32, of its full payload (what a ghost stands for). */
export function recordCrc(payload: Uint8Array): number {
  return crc32(payload);
}
