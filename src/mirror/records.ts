// Record payloads of a mirror transfer (protocol.ts): the PLANE and DATA payloads of the
// image stream format, and their ghosts (the same without block contents) for records
// resent on resume; and the hash chain over record hashes.
import { createHash } from 'node:crypto';
import { decodeData, decodePlane, StreamFormatError } from '../format/image-stream.js';

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

export const hashChain = {
  start(): string {
    return createHash('sha256').update('imgstream-mirror-chain').digest('hex');
  },
  add(chain: string, recordSha: string): string {
    return createHash('sha256').update(chain).update(recordSha).digest('hex');
  },
};

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

// ------------------------------------------------------------------ map deltas
// A map node (a block of u64 entries) sent as its differences from the node at the same
// place in the tree the destination has (its current top snapshot's): after a 1% random
// change nearly every leaf of the map changes by a few entries, and sending leaves whole
// would cost more than the data. Payload (little-endian):
//   u32 nodes, u32 zero, then per node: u64 VBN, u64 base VBN, u32 k, then k x (u32 slot, u64 value)

export interface MapDelta {
  vbn: number;
  base: number;
  slots: number[];
  values: number[];
}

export function encodeMapDeltas(nodes: MapDelta[]): Buffer {
  let len = 8;
  for (const n of nodes) len += 20 + n.slots.length * 12;
  const out = Buffer.alloc(len);
  out.writeUInt32LE(nodes.length, 0);
  let o = 8;
  for (const n of nodes) {
    out.writeBigUInt64LE(BigInt(n.vbn), o);
    out.writeBigUInt64LE(BigInt(n.base), o + 8);
    out.writeUInt32LE(n.slots.length, o + 16);
    o += 20;
    for (let i = 0; i < n.slots.length; i++) {
      out.writeUInt32LE(n.slots[i], o);
      out.writeBigUInt64LE(BigInt(n.values[i]), o + 4);
      o += 12;
    }
  }
  return out;
}

export function decodeMapDeltas(p: Buffer, blockSize: number): MapDelta[] {
  const bad = () => new StreamFormatError('damaged MAPDELTA record');
  if (p.length < 8) throw bad();
  const count = p.readUInt32LE(0);
  const out: MapDelta[] = [];
  let o = 8;
  for (let j = 0; j < count; j++) {
    if (o + 20 > p.length) throw bad();
    const vbn = Number(p.readBigUInt64LE(o));
    const base = Number(p.readBigUInt64LE(o + 8));
    const k = p.readUInt32LE(o + 16);
    o += 20;
    if (k > blockSize / 8 || o + k * 12 > p.length) throw bad();
    const slots: number[] = [];
    const values: number[] = [];
    for (let i = 0; i < k; i++) {
      const slot = p.readUInt32LE(o);
      if (slot >= blockSize / 8) throw bad();
      slots.push(slot);
      values.push(Number(p.readBigUInt64LE(o + 4)));
      o += 12;
    }
    out.push({ vbn, base, slots, values });
  }
  if (o !== p.length) throw bad();
  return out;
}

/** Applies a delta to the base node's contents, in place. */
export function applyMapDelta(node: Buffer, d: MapDelta): void {
  for (let i = 0; i < d.slots.length; i++) node.writeBigUInt64LE(BigInt(d.values[i]), d.slots[i] * 8);
}
