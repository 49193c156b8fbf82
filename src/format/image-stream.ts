// THE IMAGE STREAM FORMAT, version 1. This file is its specification; the README section
// "Stream format" and man/imgstream-stream.5 describe it for users.
//
// An image stream carries the blocks of a storage image, each tagged with its VBN, plus
// what a receiver needs to make them a volume again (the snapshot table entries and the
// planes of the snapshots it brings). It is self-describing: a catalog can be rebuilt
// from the streams alone.
//
//   stream   := preamble record*            (HEADER first, TRAILER last, nothing after)
//
//   preamble (16 bytes)
//      0  magic "IMGSTRM1"
//      8  u16 format version (1): a reader refuses another as not-a-volume (exit 5), naming
//                    the version found and the one it reads: a newer imgstream wrote it
//     10  u16 preamble length (16): readers skip to this offset
//     12  u32 required feature bits: a reader refuses a stream with a bit it does not know
//
//   record frame (16 bytes, then the stored payload)
//      0  u8  record type (RecordType)
//      1  u8  flags: bit 0 OPTIONAL (a reader that does not know the type skips it;
//                    a record without it is required: unknown -> refuse)
//                    bit 1 ZSTD (the stored payload is one zstd frame of the raw payload)
//                    bit 2 SEALED (encrypted stream: the stored payload is AES-256-GCM
//                          ciphertext then its 16-byte tag; see ENCRYPTION below)
//      2  u16 zero
//      4  u32 stored payload length (bytes that follow the frame)
//      8  u32 raw payload length (after decompression)
//     12  u32 crc32 of the stored payload: every record, so every chunk, is checked alone
//
//   HEADER (type 1, first, never compressed): UTF-8 JSON, see StreamHeader below.
//   PLANE  (type 2): part of one snapshot's plane. Planes are sent whole (all non-zero
//          plane blocks) for every snapshot the stream brings.
//            0  u32 index of the snapshot in header.snapshots
//            4  u32 n: plane blocks in this record
//            8  n x u32 plane block (chunk) numbers, then n x blockSize bytes of plane bits
//   DATA   (type 3): a chunk of blocks.
//            0  u32 n: blocks in this record
//            4  u32 zero
//            8  n x u64 VBN (little-endian), then n x blockSize bytes of block contents
//   DEALLOC (type 4, OPTIONAL): VBNs that left the active file system (mirroring).
//            0  u32 n ranges, then n x (u64 first VBN, u64 count)
//   MAPDELTA (type 5, required; feature bit MAPDELTA): map blocks of the image sent as
//          their differences from the map block at the same place in the base
//          snapshot's tree, which the receiver holds (incremental streams only). After a
//          1% random change nearly every map leaf changes by a few entries: whole leaves
//          would cost as much as the data. The receiver reads the base block, sets the
//          listed entries and writes the result at the VBN, as if a DATA record had
//          carried it.
//            0  u32 n nodes, u32 zero, then per node: u64 VBN, u64 base VBN,
//               u32 k, then k x (u32 entry index, u64 entry value)
//   PAD    (type 6, OPTIONAL): zero bytes, which readers skip. An uncompressed stream puts
//          one before a DATA record whose blocks would otherwise not start at a multiple
//          of DATA_ALIGN (4096) bytes from the stream's first byte, so a reader whose
//          buffers are aligned like the file can write the blocks with direct I/O
//          straight from them. At most 4 KiB + 16 per DATA record of about 1 MiB
//          (0.2%); a stream without PAD records is just as valid.
//   AUTH   (type 7, required; encrypted streams only, right after the header): SEALED,
//          an empty plaintext: its 16-byte tag authenticates the header (see ENCRYPTION).
//   TRAILER (type 15, last, never compressed): fixed 96 bytes
//            0  u64 records before the trailer (header included)
//            8  u64 DATA blocks
//           16  u64 raw DATA bytes (blocks x blockSize)
//           24  u64 PLANE records
//           32  u64 stream bytes before the trailer frame (preamble included)
//           40  32 bytes SHA-256 chain: of the preamble, the header record (frame and
//               payload), then every later record's 16-byte frame in order. Each frame
//               holds its payload's crc32, so the chain covers every byte: a changed,
//               lost, repeated or reordered record breaks it, and hashing frames instead
//               of payloads keeps the stream checksum from costing a pass over the data.
//           72  u64 map blocks in MAPDELTA records (zero in a stream without them)
//           80  16 bytes zero
//
// ENCRYPTION (required feature bit ENCRYPTED). The header gains "encryption": { cipher
// "aes-256-gcm", salt: 32 random bytes (hex), scrypt?: { salt, N, r, p } when the key is
// a passphrase, check: 16 bytes (hex) }. The header stays in clear (catalog rebuild
// reads it without the key) and holds no key material. From the user's 32-byte key K
// (or scrypt(passphrase, scrypt.salt, N, r, p) -> 32 bytes), HKDF-SHA256 with salt
// `salt` derives the record key (info "imgstream v1 record key", 32 bytes), the nonce
// prefix ("imgstream v1 nonce prefix", 4 bytes) and the key check value ("imgstream v1
// key check", 16 bytes, must equal `check`: else the key is wrong). Record n (the header
// is record 1, PAD records are not written) is sealed with nonce = prefix || u64 n and
// associated data = SHA-256(preamble || header frame || header payload) || u64 n || u8
// type || u8 flags: a record moved, dropped, repeated, changed or taken from another
// stream (whose header, stream id and salt differ) fails its tag. Payloads are
// compressed first, then sealed (ZSTD and SEALED together: the plaintext is the zstd
// frame). Record 2 is AUTH, checked before the header is handed on. The TRAILER of an
// encrypted stream is SEALED too, but in clear: its stored payload is the 96 trailer
// bytes then the tag of an empty plaintext whose associated data ends with those 96
// bytes; its counts prove no record was dropped at the end. In a SEALED frame without
// ZSTD the raw length is the stored length less 16.
//
// A stream without its trailer is incomplete, whatever else it holds: readers report it
// and restore never commits it. Multi-byte integers are little-endian.
import { crc32 } from './crc32.js';
import type { SnapshotEntry } from './snapshot-entry.js';
import { validEncryption, type StreamEncryption } from '../crypt/record-cipher.js';
import { FormatVersionError, NewerFeatureError } from '../core/errors.js';

export const STREAM_MAGIC = 'IMGSTRM1';
export const STREAM_VERSION = 1;
export const PREAMBLE_BYTES = 16;
export const FRAME_BYTES = 16;
export const TRAILER_BYTES = 96;
/** Largest stored or raw payload a reader accepts: guards against a corrupt length. */
export const MAX_PAYLOAD = 256 << 20;

export enum RecordType {
  Header = 1,
  Plane = 2,
  Data = 3,
  Dealloc = 4,
  MapDelta = 5,
  Pad = 6,
  Auth = 7,
  Trailer = 15,
}

/** Where an uncompressed stream's DATA blocks start: multiples of this from the stream's first byte (see PAD). */
export const DATA_ALIGN = 4096;

export const FLAG_OPTIONAL = 1;
export const FLAG_ZSTD = 2;
/** The stored payload is sealed (AES-256-GCM ciphertext then tag): encrypted streams. */
export const FLAG_SEALED = 4;
/** AES-256-GCM tag bytes after a sealed payload. */
export const SEAL_TAG_BYTES = 16;

/** Required feature bits. */
export const FEATURE_ZSTD = 1;
/** The stream holds MAPDELTA records (a reader without them would restore a broken map). */
export const FEATURE_MAPDELTA = 2;
/** Every record after the header is sealed (see ENCRYPTION): a reader without it would read ciphertext. */
export const FEATURE_ENCRYPTED = 4;
export const KNOWN_FEATURES = FEATURE_ZSTD | FEATURE_MAPDELTA | FEATURE_ENCRYPTED;

export class StreamFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StreamFormatError';
  }
}

// ------------------------------------------------------------------ preamble

export function encodePreamble(features: number): Buffer {
  const b = Buffer.alloc(PREAMBLE_BYTES);
  b.write(STREAM_MAGIC, 0, 'latin1');
  b.writeUInt16LE(STREAM_VERSION, 8);
  b.writeUInt16LE(PREAMBLE_BYTES, 10);
  b.writeUInt32LE(features >>> 0, 12);
  return b;
}

export function decodePreamble(b: Buffer): { version: number; length: number; features: number } {
  if (b.length < PREAMBLE_BYTES || b.toString('latin1', 0, 8) !== STREAM_MAGIC) throw new StreamFormatError('not an imgstream image stream (bad magic)');
  const version = b.readUInt16LE(8);
  // a newer imgstream wrote it: not damage (exit 5, as for a volume of another version)
  if (version !== STREAM_VERSION) throw new FormatVersionError('an image stream', version, [STREAM_VERSION]);
  const length = b.readUInt16LE(10);
  if (length < PREAMBLE_BYTES) throw new StreamFormatError('damaged stream preamble');
  const features = b.readUInt32LE(12);
  const unknown = features & ~KNOWN_FEATURES;
  if (unknown) throw new NewerFeatureError(`the stream needs features 0x${unknown.toString(16)}`);
  return { version, length, features };
}

// ------------------------------------------------------------------ frames

export interface FrameHeader {
  type: number;
  flags: number;
  storedLength: number;
  rawLength: number;
  crc: number;
}

export function encodeFrame(type: RecordType, flags: number, stored: Uint8Array, rawLength: number): Buffer {
  return encodeFrameWithCrc(type, flags, stored.length, rawLength, crc32(stored));
}

/** A frame for a payload whose crc32 was computed elsewhere (on a worker thread). */
export function encodeFrameWithCrc(type: RecordType, flags: number, storedLength: number, rawLength: number, crc: number): Buffer {
  const b = Buffer.alloc(FRAME_BYTES);
  b[0] = type;
  b[1] = flags;
  b.writeUInt32LE(storedLength, 4);
  b.writeUInt32LE(rawLength, 8);
  b.writeUInt32LE(crc >>> 0, 12);
  return b;
}

export function decodeFrame(b: Buffer): FrameHeader {
  const f = { type: b[0], flags: b[1], storedLength: b.readUInt32LE(4), rawLength: b.readUInt32LE(8), crc: b.readUInt32LE(12) };
  if (b.readUInt16LE(2) !== 0 || (f.flags & ~(FLAG_OPTIONAL | FLAG_ZSTD | FLAG_SEALED)) !== 0) throw new StreamFormatError('damaged record frame');
  if (f.storedLength > MAX_PAYLOAD || f.rawLength > MAX_PAYLOAD) throw new StreamFormatError('damaged record frame (length out of range)');
  const tag = f.flags & FLAG_SEALED ? SEAL_TAG_BYTES : 0;
  if (f.storedLength < tag) throw new StreamFormatError('damaged record frame (sealed payload shorter than its tag)');
  if (!(f.flags & FLAG_ZSTD) && f.rawLength !== f.storedLength - tag) throw new StreamFormatError('damaged record frame (lengths disagree)');
  return f;
}

export function payloadCrc(stored: Uint8Array): number {
  return crc32(stored);
}

// ------------------------------------------------------------------ header

/** A snapshot table entry as a stream carries it: what a volume keeps, less its slot and reuse count. */
export type StreamSnapshot = Omit<SnapshotEntry, 'slot' | 'reusedBlocks'>;

export interface StreamHeader {
  format: 'imgstream-stream';
  version: 1;
  /** Identifies this stream (catalog records, tape files, spanning). */
  streamId: string;
  volume: { uuid: string; blockSize: number; nblocks: number; logicalSize: number; maxSnapshots: number; mapDepth: number };
  level: number;
  /** The storage image carried, e.g. "june5 + june4 - june3". */
  expression: string;
  /**
   * The snapshot the receiver must already hold (null for a full stream). `shadow`: a
   * shadow snapshot at the source, whose blocks its allocator may have reused: the stream
   * carries those the top holds, and the receiver's copy becomes a shadow one, whose
   * blocks they replace. Optional: streams written before it was added lack it.
   */
  base: { id: number; name: string; generation: number; createdMs?: number; shadow?: boolean } | null;
  /** The newest snapshot carried: the receiver's active file system becomes it. */
  top: { id: number; name: string; generation: number };
  /** The snapshots this stream brings, oldest first (the last is top); each has PLANE records. */
  snapshots: StreamSnapshot[];
  /**
   * Every snapshot the source still held when it was dumped, up to the top (ids, names,
   * generations), the brought ones included. A receiver drops the older snapshots it has
   * that are not listed: the source deleted them, and its allocator may have reused their
   * blocks for this stream's. Optional: streams written before it was added lack it, and
   * then nothing is dropped. `shadow`: a shadow snapshot at the source (perhaps made one
   * after it was dumped: snapshot shadow), whose blocks its allocator may have reused for
   * this stream's: a receiver holding it regular makes it a shadow one, whose blocks the
   * stream's replace.
   */
  retained?: Array<{ id: number; name: string; generation: number; shadow?: boolean }>;
  created: string;
  host: string;
  /** Order of DATA blocks: "vbn", or "interleave:N" (round-robin over N stripes). */
  order: string;
  compression: { codec: 'zstd'; level: number } | { codec: 'none' };
  /** Blocks and bytes of the storage image, as evaluated before writing. */
  image: { blocks: number; bytes: number; extents: number };
  /** Encrypted streams only (feature bit ENCRYPTED): salts and key check value, never a key. */
  encryption?: StreamEncryption;
}

export function encodeHeader(h: StreamHeader): Buffer {
  return Buffer.from(JSON.stringify(h), 'utf8');
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export function decodeHeader(b: Buffer): StreamHeader {
  let h: StreamHeader;
  try {
    h = JSON.parse(b.toString('utf8'));
  } catch {
    throw new StreamFormatError('damaged stream header (not JSON)');
  }
  if (h?.format === 'imgstream-stream' && h.version !== 1) throw new FormatVersionError('an image stream header', (h as { version: unknown }).version, [1]);
  const v = h?.volume;
  const ok =
    h?.format === 'imgstream-stream' &&
    h.version === 1 &&
    typeof h.streamId === 'string' &&
    v && typeof v.uuid === 'string' && isInt(v.blockSize) && isInt(v.nblocks) && isInt(v.logicalSize) && isInt(v.maxSnapshots) && isInt(v.mapDepth) &&
    isInt(h.level) &&
    typeof h.expression === 'string' &&
    (h.base === null || (h.base && isInt(h.base.id) && typeof h.base.name === 'string' && (h.base.createdMs === undefined || isInt(h.base.createdMs)) && (h.base.shadow === undefined || typeof h.base.shadow === 'boolean'))) &&
    h.top && isInt(h.top.id) && typeof h.top.name === 'string' &&
    Array.isArray(h.snapshots) && h.snapshots.length > 0 &&
    h.snapshots.every((s) => isInt(s.id) && typeof s.name === 'string' && isInt(s.mapRoot) && isInt(s.generation) && isInt(s.blocks) && isInt(s.mappedBlocks)) &&
    h.snapshots[h.snapshots.length - 1].id === h.top.id &&
    (h.encryption === undefined || validEncryption(h.encryption)) &&
    (h.retained === undefined || (Array.isArray(h.retained) && h.retained.every((s) => s && isInt(s.id) && typeof s.name === 'string' && isInt(s.generation) && (s.shadow === undefined || typeof s.shadow === 'boolean'))));
  if (!ok) throw new StreamFormatError('damaged or incomplete stream header');
  return h;
}

// ------------------------------------------------------------------ payloads

export function encodeData(vbns: ArrayLike<number>, blocks: Uint8Array[] | Buffer, blockSize: number): Buffer {
  const n = vbns.length;
  const out = Buffer.allocUnsafe(8 + n * 8 + n * blockSize);
  out.writeUInt32LE(n, 0);
  out.writeUInt32LE(0, 4);
  for (let i = 0; i < n; i++) {
    out.writeUInt32LE(vbns[i] >>> 0, 8 + i * 8);
    out.writeUInt32LE(Math.floor(vbns[i] / 4294967296), 12 + i * 8);
  }
  const base = 8 + n * 8;
  if (Buffer.isBuffer(blocks)) blocks.copy(out, base, 0, n * blockSize);
  else blocks.forEach((b, i) => out.set(b, base + i * blockSize));
  return out;
}

/** VBNs and a view of the block contents (block i at i*blockSize). */
export function decodeData(p: Buffer, blockSize: number): { vbns: number[]; data: Buffer } {
  if (p.length < 8) throw new StreamFormatError('damaged DATA record');
  const n = p.readUInt32LE(0);
  if (p.length !== 8 + n * 8 + n * blockSize) throw new StreamFormatError('damaged DATA record (length does not match its block count)');
  const vbns = new Array<number>(n);
  for (let i = 0; i < n; i++) vbns[i] = p.readUInt32LE(8 + i * 8) + p.readUInt32LE(12 + i * 8) * 4294967296;
  return { vbns, data: p.subarray(8 + n * 8) };
}

/**
 * The payload length of the PAD record to write at stream offset `at` before a DATA record
 * whose blocks start `dataOffset` bytes into its payload (8 + 8n), so that they start at a
 * multiple of DATA_ALIGN; null when they do already.
 */
export function padLength(at: number, dataOffset: number): number | null {
  if ((at + FRAME_BYTES + dataOffset) % DATA_ALIGN === 0) return null;
  return (DATA_ALIGN - ((at + 2 * FRAME_BYTES + dataOffset) % DATA_ALIGN)) % DATA_ALIGN;
}

export function encodePlane(snapshotIndex: number, chunks: number[], words: Uint8Array[], blockSize: number): Buffer {
  const n = chunks.length;
  const out = Buffer.allocUnsafe(8 + n * 4 + n * blockSize);
  out.writeUInt32LE(snapshotIndex, 0);
  out.writeUInt32LE(n, 4);
  chunks.forEach((c, i) => out.writeUInt32LE(c, 8 + i * 4));
  words.forEach((w, i) => out.set(w, 8 + n * 4 + i * blockSize));
  return out;
}

export function decodePlane(p: Buffer, blockSize: number): { snapshotIndex: number; chunks: number[]; data: Buffer } {
  if (p.length < 8) throw new StreamFormatError('damaged PLANE record');
  const n = p.readUInt32LE(4);
  if (p.length !== 8 + n * 4 + n * blockSize) throw new StreamFormatError('damaged PLANE record (length does not match its block count)');
  const chunks = Array.from({ length: n }, (_, i) => p.readUInt32LE(8 + i * 4));
  return { snapshotIndex: p.readUInt32LE(0), chunks, data: p.subarray(8 + n * 4) };
}

export function encodeDealloc(ranges: Array<[number, number]>): Buffer {
  const out = Buffer.alloc(4 + ranges.length * 16);
  out.writeUInt32LE(ranges.length, 0);
  ranges.forEach(([first, count], i) => {
    out.writeBigUInt64LE(BigInt(first), 4 + i * 16);
    out.writeBigUInt64LE(BigInt(count), 12 + i * 16);
  });
  return out;
}

export function decodeDealloc(p: Buffer): Array<[number, number]> {
  const n = p.length >= 4 ? p.readUInt32LE(0) : -1;
  if (n < 0 || p.length !== 4 + n * 16) throw new StreamFormatError('damaged DEALLOC record');
  return Array.from({ length: n }, (_, i) => [Number(p.readBigUInt64LE(4 + i * 16)), Number(p.readBigUInt64LE(12 + i * 16))] as [number, number]);
}

export interface StreamTrailer {
  records: number;
  dataBlocks: number;
  dataBytes: number;
  planeRecords: number;
  streamBytes: number;
  sha256: string;
  /** Map blocks carried as MAPDELTA nodes. */
  mapDeltaNodes: number;
}

export function encodeTrailer(t: StreamTrailer): Buffer {
  const b = Buffer.alloc(TRAILER_BYTES);
  b.writeBigUInt64LE(BigInt(t.records), 0);
  b.writeBigUInt64LE(BigInt(t.dataBlocks), 8);
  b.writeBigUInt64LE(BigInt(t.dataBytes), 16);
  b.writeBigUInt64LE(BigInt(t.planeRecords), 24);
  b.writeBigUInt64LE(BigInt(t.streamBytes), 32);
  Buffer.from(t.sha256, 'hex').copy(b, 40, 0, 32);
  b.writeBigUInt64LE(BigInt(t.mapDeltaNodes), 72);
  return b;
}

export function decodeTrailer(b: Buffer): StreamTrailer {
  if (b.length !== TRAILER_BYTES) throw new StreamFormatError('damaged stream trailer');
  return {
    records: Number(b.readBigUInt64LE(0)),
    dataBlocks: Number(b.readBigUInt64LE(8)),
    dataBytes: Number(b.readBigUInt64LE(16)),
    planeRecords: Number(b.readBigUInt64LE(24)),
    streamBytes: Number(b.readBigUInt64LE(32)),
    sha256: b.toString('hex', 40, 72),
    mapDeltaNodes: Number(b.readBigUInt64LE(72)),
  };
}

// ------------------------------------------------------------------ map deltas

/** One map block as its differences from the base block: entry `slots[i]` becomes `values[i]`. */
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
  if (p.length < 8 || p.readUInt32LE(4) !== 0) throw bad();
  const count = p.readUInt32LE(0);
  const entries = blockSize / 8;
  const out: MapDelta[] = [];
  let o = 8;
  for (let j = 0; j < count; j++) {
    if (o + 20 > p.length) throw bad();
    const vbn = Number(p.readBigUInt64LE(o));
    const base = Number(p.readBigUInt64LE(o + 8));
    const k = p.readUInt32LE(o + 16);
    o += 20;
    if (k > entries || o + k * 12 > p.length) throw bad();
    const slots: number[] = [];
    const values: number[] = [];
    for (let i = 0; i < k; i++) {
      const slot = p.readUInt32LE(o);
      if (slot >= entries) throw bad();
      slots.push(slot);
      values.push(Number(p.readBigUInt64LE(o + 4)));
      o += 12;
    }
    out.push({ vbn, base, slots, values });
  }
  if (o !== p.length) throw bad();
  return out;
}

/** Applies a delta to the base block's contents, in place. */
export function applyMapDelta(node: Buffer, d: MapDelta): void {
  for (let i = 0; i < d.slots.length; i++) node.writeBigUInt64LE(BigInt(d.values[i]), d.slots[i] * 8);
}
