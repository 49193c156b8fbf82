// The write journal's on-disk record: a fixed 48-byte header (little-endian) and a
// payload, checksummed together, so a reader recognises a torn or foreign tail and stops
// there. A journal is a directory of segment files (journal-files.ts), each a run of
// records in sequence order.
//
//   0  u32  magic "IJR1": the 1 is the format version (another digit: a newer imgstream's
//           journal, refused as such, never cut off as a torn tail)
//   4  u8   kind (RecordKind)
//   5  u8   flags (0)
//   6  u16  reserved (0)
//   8  f64  seq: 1, 2, 3… without gaps across segments
//  16  f64  time: when the write was acknowledged, ms since the epoch (fractional)
//  24  f64  lbn: the first logical block (DATA, ZERO)
//  32  u32  count: blocks (DATA, ZERO)
//  36  u32  payload bytes: DATA count × block size; markers a JSON object
//  40  u32  CRC-32 of bytes 0..40 and the payload
//  44  u32  reserved (0)
import { crc32, crc32Range } from '../format/crc32.js';
import { crc32Combine } from '../format/crc32-combine.js';

export const RECORD_MAGIC = 0x3152_4a49; // "IJR1" read little-endian
export const RECORD_HEADER_BYTES = 48;
/** Largest payload a record may carry: a reader refuses a header claiming more (a damaged length). */
export const MAX_RECORD_PAYLOAD = 64 << 20;

export enum RecordKind {
  /** `count` whole blocks from `lbn`, as they read after the write. */
  Data = 1,
  /** `count` blocks from `lbn` read as zeros now (trim, write-zeroes). */
  Zero = 2,
  /** A consistency point committed every record before it: { generation }. */
  Cp = 3,
  /** A snapshot was taken after every record before it: { name }. */
  Snapshot = 4,
  /** The journal outgrew its limit: the records from { after } on were dropped; the changed blocks are tracked in the dirty file until a resync. */
  Overflow = 5,
  /** A resync point: { snapshot } holds every write before it; the blocks changed since { after } are listed in { dirty } (a file in the journal directory). */
  Resync = 6,
  /** A server opened the journal: { uuid, blockSize, logicalSize }. */
  Open = 7,
  /** A snapshot was renamed { from, to }: written before the CP that commits the rename, replayed after a crash like a write (destinations learn the new name). */
  Rename = 8,
}

/** The last record kind this imgstream knows; a later one is a newer imgstream's. */
export const LAST_RECORD_KIND = RecordKind.Rename;

export interface RecordHeader {
  kind: RecordKind;
  seq: number;
  time: number;
  lbn: number;
  count: number;
  payloadBytes: number;
}

export interface JournalRecord extends RecordHeader {
  /** DATA: the blocks; markers: the JSON payload's bytes; ZERO: empty. */
  payload: Buffer;
}

/** Header and payload as one buffer. */
export function encodeRecord(h: Omit<RecordHeader, 'payloadBytes'>, payload: Buffer | null): Buffer {
  const n = payload?.length ?? 0;
  const out = Buffer.allocUnsafe(RECORD_HEADER_BYTES + n);
  writeHeader(out, 0, h, n);
  if (payload) payload.copy(out, RECORD_HEADER_BYTES);
  sealRecord(out, 0, n);
  return out;
}

/** Writes a header (without its CRC) at `at`; sealRecord() completes it once the payload follows. */
export function writeHeader(out: Buffer, at: number, h: Omit<RecordHeader, 'payloadBytes'>, payloadBytes: number): void {
  out.writeUInt32LE(RECORD_MAGIC, at);
  out.writeUInt8(h.kind, at + 4);
  out.writeUInt8(0, at + 5);
  out.writeUInt16LE(0, at + 6);
  out.writeDoubleLE(h.seq, at + 8);
  out.writeDoubleLE(h.time, at + 16);
  out.writeDoubleLE(h.lbn, at + 24);
  out.writeUInt32LE(h.count, at + 32);
  out.writeUInt32LE(payloadBytes, at + 36);
  out.writeUInt32LE(0, at + 44);
}

/** Computes the CRC of the record at `at` (header then `payloadBytes` bytes) into its header. */
export function sealRecord(out: Buffer, at: number, payloadBytes: number): void {
  const c = crc32Range(out, at, at + 40);
  out.writeUInt32LE(crc32Range(out, at + RECORD_HEADER_BYTES, at + RECORD_HEADER_BYTES + payloadBytes, c), at + 40);
}

/** Computes the CRC of a header and its payload, kept in separate buffers, into the header. */
export function sealHeader(head: Buffer, payload: Buffer | null): void {
  let c = crc32Range(head, 0, 40);
  if (payload !== null && payload.length > 0) c = crc32(payload, c);
  head.writeUInt32LE(c, 40);
}

/**
 * The format version of a record header of another version at `at` ("IJR" and a digit
 * other than 1: a newer imgstream wrote it), or null. Readers refuse such a record rather
 * than take it for damage or, at a segment's end, for a torn tail to cut off.
 */
export function otherRecordVersion(buf: Buffer, at: number): number | null {
  if (buf.length - at < 4 || buf.toString('latin1', at, at + 3) !== 'IJR') return null;
  const digit = buf[at + 3] - 0x30;
  return digit >= 0 && digit <= 9 && digit !== 1 ? digit : null;
}

/** The header at `at`, or null when the bytes there are not one (wrong magic, kind or length). */
export function decodeHeader(buf: Buffer, at: number): RecordHeader | null {
  if (buf.length - at < RECORD_HEADER_BYTES) return null;
  if (buf.readUInt32LE(at) !== RECORD_MAGIC) return null;
  const kind = buf.readUInt8(at + 4);
  // a kind past the last known one is read (its checksum decides whether it is a record):
  // a newer imgstream's, refused as such by the reader, never cut off as a torn tail
  if (kind < RecordKind.Data) return null;
  const payloadBytes = buf.readUInt32LE(at + 36);
  if (payloadBytes > MAX_RECORD_PAYLOAD) return null;
  const seq = buf.readDoubleLE(at + 8);
  if (!Number.isSafeInteger(seq) || seq < 1) return null;
  return { kind, seq, time: buf.readDoubleLE(at + 16), lbn: buf.readDoubleLE(at + 24), count: buf.readUInt32LE(at + 32), payloadBytes };
}

/** True when the record at `at` (header h, payload present in buf) has its checksum. */
export function recordIntact(buf: Buffer, at: number, h: RecordHeader): boolean {
  const end = at + RECORD_HEADER_BYTES + h.payloadBytes;
  if (end > buf.length) return false;
  return intactPayloadCrc(buf, at, buf.subarray(at + RECORD_HEADER_BYTES, end)) !== null;
}

/**
 * The crc32 of the payload alone (`payload`, the view of it that follows the header at
 * `at`) when the record has its checksum, else null: the record's checksum is checked
 * from it, and a block's own checksum is then known without a second pass over its bytes.
 */
export function intactPayloadCrc(buf: Buffer, at: number, payload: Buffer): number | null {
  const own = crc32(payload);
  return crc32Combine(crc32Range(buf, at, at + 40), own, payload.length) === buf.readUInt32LE(at + 40) ? own : null;
}

/** A marker's JSON payload. */
export function markerPayload(value: object): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

export function parseMarker<T>(r: JournalRecord): T {
  return JSON.parse(r.payload.toString('utf8')) as T;
}
