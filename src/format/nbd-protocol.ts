// The NBD protocol as imgstream speaks it: magic numbers, flags, option, reply, info,
// command and error values, every message layout (below), and the handshake and option
// messages as pure encode/decode pairs (no I/O; the server in src/nbd frames these on
// sockets); the transmission phase's messages are in nbd-transmission.ts. The reference is
// https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md. All integers are
// big-endian ("network byte order").
//
// Supported: the fixed newstyle handshake; options EXPORT_NAME, ABORT, LIST, INFO, GO
// (with INFO_EXPORT, INFO_NAME, INFO_DESCRIPTION, INFO_BLOCK_SIZE), STRUCTURED_REPLY,
// LIST_META_CONTEXT and SET_META_CONTEXT; simple and structured replies (OFFSET_DATA,
// OFFSET_HOLE, BLOCK_STATUS, ERROR); commands READ (with DF), WRITE, DISC, FLUSH, TRIM,
// WRITE_ZEROES with FUA, NO_HOLE, FAST_ZERO, and BLOCK_STATUS (with REQ_ONE).
// Not supported (answered NBD_REP_ERR_UNSUP): TLS, and extended headers (still an
// experimental extension of proto.md; 32-bit lengths are enough for 32 MiB payloads and
// block status replies that may stop short). Oldstyle negotiation is never offered.
//
// Handshake (server first):
//   S: u64 NBDMAGIC, u64 IHAVEOPT, u16 handshake flags            (GREETING_BYTES)
//   C: u32 client flags                                            (CLIENT_FLAGS_BYTES)
// Option haggling, repeated until EXPORT_NAME, a successful GO or ABORT:
//   C: u64 IHAVEOPT, u32 option, u32 length                        (OPTION_HEADER_BYTES)
//      `length` bytes of option data follow
//   S: u64 OPTION_REPLY_MAGIC, u32 option, u32 reply type, u32 length  (OPTION_REPLY_HEADER_BYTES)
//      `length` bytes of reply data follow
//   EXPORT_NAME is answered without a reply header: u64 size, u16 transmission flags and
//   124 zero bytes (none when both sides set NO_ZEROES).
// Transmission:
//   C: u32 REQUEST_MAGIC, u16 command flags, u16 type, 8-byte cookie, u64 offset, u32 length
//      (REQUEST_BYTES); `length` bytes of data follow a WRITE
//   S: u32 SIMPLE_REPLY_MAGIC, u32 error, 8-byte cookie (SIMPLE_REPLY_BYTES); `length`
//      bytes of data follow the reply to a successful READ
//   or, once STRUCTURED_REPLY was negotiated, one or more chunks, the last with FLAG_DONE:
//   S: u32 STRUCTURED_REPLY_MAGIC, u16 flags, u16 type, 8-byte cookie, u32 length
//      (CHUNK_HEADER_BYTES); `length` bytes of payload follow:
//      OFFSET_DATA   u64 offset, data
//      OFFSET_HOLE   u64 offset, u32 hole length
//      BLOCK_STATUS  u32 context id, then per extent u32 length, u32 status flags
//      ERROR         u32 error, u16 message length, message
// Metadata contexts (LIST_META_CONTEXT, SET_META_CONTEXT) carry:
//   C: u32 export name length, name, u32 query count, per query u32 length and string
//   S: NBD_REP_META_CONTEXT replies of u32 context id and name, then NBD_REP_ACK
import { InvalidInputError } from '../core/errors.js';

// ---------------------------------------------------------------- magic numbers

/** "NBDMAGIC": opens the server's greeting. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** "IHAVEOPT": the newstyle greeting, and the start of every option request. */
export const IHAVEOPT = 0x49484156454f5054n;
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// ---------------------------------------------------------------- sizes of fixed parts

export const GREETING_BYTES = 18;
export const CLIENT_FLAGS_BYTES = 4;
export const OPTION_HEADER_BYTES = 16;
export const OPTION_REPLY_HEADER_BYTES = 20;
export const REQUEST_BYTES = 28;
export const SIMPLE_REPLY_BYTES = 16;
export const CHUNK_HEADER_BYTES = 20;
/** The reply to EXPORT_NAME: size, flags and (unless NO_ZEROES) 124 reserved zero bytes. */
export const EXPORT_NAME_REPLY_BYTES = 8 + 2 + 124;
/** Strings (export names, descriptions) are at most this long (proto.md, "Conventions"). */
export const MAX_STRING_BYTES = 4096;

// ---------------------------------------------------------------- flags

/** Handshake flags (server, u16). */
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;

/** Client flags (u32). Any other bit set: the server must drop the connection. */
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;
export const KNOWN_CLIENT_FLAGS = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES;

/** Transmission flags (u16), sent with the export's size. */
export const TFLAG_HAS_FLAGS = 1 << 0;
export const TFLAG_READ_ONLY = 1 << 1;
export const TFLAG_SEND_FLUSH = 1 << 2;
export const TFLAG_SEND_FUA = 1 << 3;
export const TFLAG_ROTATIONAL = 1 << 4;
export const TFLAG_SEND_TRIM = 1 << 5;
export const TFLAG_SEND_WRITE_ZEROES = 1 << 6;
export const TFLAG_SEND_DF = 1 << 7;
export const TFLAG_CAN_MULTI_CONN = 1 << 8;
export const TFLAG_SEND_RESIZE = 1 << 9;
export const TFLAG_SEND_CACHE = 1 << 10;
export const TFLAG_SEND_FAST_ZERO = 1 << 11;

/** Command flags (u16, per request). */
export const CMD_FLAG_FUA = 1 << 0;
export const CMD_FLAG_NO_HOLE = 1 << 1;
export const CMD_FLAG_DF = 1 << 2;
export const CMD_FLAG_REQ_ONE = 1 << 3;
export const CMD_FLAG_FAST_ZERO = 1 << 4;

// ---------------------------------------------------------------- options and replies

export const OPT_EXPORT_NAME = 1;
export const OPT_ABORT = 2;
export const OPT_LIST = 3;
export const OPT_STARTTLS = 5;
export const OPT_INFO = 6;
export const OPT_GO = 7;
export const OPT_STRUCTURED_REPLY = 8;
export const OPT_LIST_META_CONTEXT = 9;
export const OPT_SET_META_CONTEXT = 10;
export const OPT_EXTENDED_HEADERS = 11;

export const REP_ACK = 1;
export const REP_SERVER = 2;
export const REP_INFO = 3;
export const REP_META_CONTEXT = 4;
const REP_ERR = 2 ** 31;
export const REP_ERR_UNSUP = REP_ERR + 1;
export const REP_ERR_POLICY = REP_ERR + 2;
export const REP_ERR_INVALID = REP_ERR + 3;
export const REP_ERR_PLATFORM = REP_ERR + 4;
export const REP_ERR_TLS_REQD = REP_ERR + 5;
export const REP_ERR_UNKNOWN = REP_ERR + 6;
export const REP_ERR_SHUTDOWN = REP_ERR + 7;
export const REP_ERR_BLOCK_SIZE_REQD = REP_ERR + 8;
export const REP_ERR_TOO_BIG = REP_ERR + 9;

/** Structured reply chunk flags and types. */
export const REPLY_FLAG_DONE = 1 << 0;
export const REPLY_TYPE_NONE = 0;
export const REPLY_TYPE_OFFSET_DATA = 1;
export const REPLY_TYPE_OFFSET_HOLE = 2;
export const REPLY_TYPE_BLOCK_STATUS = 5;
export const REPLY_TYPE_ERROR = 2 ** 15 + 1;
export const REPLY_TYPE_ERROR_OFFSET = 2 ** 15 + 2;

/** base:allocation status flags. */
export const STATE_HOLE = 1 << 0;
export const STATE_ZERO = 1 << 1;

export function isErrorReply(type: number): boolean {
  return type >= REP_ERR;
}

/** Information types in NBD_REP_INFO replies to INFO and GO. */
export const INFO_EXPORT = 0;
export const INFO_NAME = 1;
export const INFO_DESCRIPTION = 2;
export const INFO_BLOCK_SIZE = 3;

// ---------------------------------------------------------------- commands and errors

export const CMD_READ = 0;
export const CMD_WRITE = 1;
export const CMD_DISC = 2;
export const CMD_FLUSH = 3;
export const CMD_TRIM = 4;
export const CMD_CACHE = 5;
export const CMD_WRITE_ZEROES = 6;
export const CMD_BLOCK_STATUS = 7;

/** Error values of replies (errno values, fixed by the protocol whatever the platform). */
export const NBD_OK = 0;
export const NBD_EPERM = 1;
export const NBD_EIO = 5;
export const NBD_ENOMEM = 12;
export const NBD_EINVAL = 22;
export const NBD_ENOSPC = 28;
export const NBD_EOVERFLOW = 75;
export const NBD_ENOTSUP = 95;
export const NBD_ESHUTDOWN = 108;

/** Bytes that break the protocol (a wrong magic, a malformed option): the session ends. */
export class NbdProtocolError extends InvalidInputError {}

// ---------------------------------------------------------------- handshake

export function encodeGreeting(handshakeFlags: number): Buffer {
  const b = Buffer.alloc(GREETING_BYTES);
  b.writeBigUInt64BE(NBD_MAGIC, 0);
  b.writeBigUInt64BE(IHAVEOPT, 8);
  b.writeUInt16BE(handshakeFlags, 16);
  return b;
}

/** The server's greeting as a client reads it: its handshake flags. */
export function decodeGreeting(b: Uint8Array): number {
  const v = messageView(b, GREETING_BYTES);
  if (v.readBigUInt64BE(0) !== NBD_MAGIC) throw new NbdProtocolError('not an NBD server: no NBDMAGIC');
  if (v.readBigUInt64BE(8) !== IHAVEOPT) throw new NbdProtocolError('the NBD server does not speak newstyle negotiation');
  return v.readUInt16BE(16);
}

export function encodeClientFlags(flags: number): Buffer {
  const b = Buffer.alloc(CLIENT_FLAGS_BYTES);
  b.writeUInt32BE(flags >>> 0, 0);
  return b;
}

export function decodeClientFlags(b: Uint8Array): number {
  return messageView(b, CLIENT_FLAGS_BYTES).readUInt32BE(0);
}

// ---------------------------------------------------------------- options

export interface OptionHeader {
  option: number;
  /** Bytes of option data that follow the header. */
  length: number;
}

export function encodeOptionHeader(h: OptionHeader): Buffer {
  const b = Buffer.alloc(OPTION_HEADER_BYTES);
  b.writeBigUInt64BE(IHAVEOPT, 0);
  b.writeUInt32BE(h.option >>> 0, 8);
  b.writeUInt32BE(h.length >>> 0, 12);
  return b;
}

/** An option request's header. Throws NbdProtocolError when the magic is wrong. */
export function decodeOptionHeader(b: Uint8Array): OptionHeader {
  const v = messageView(b, OPTION_HEADER_BYTES);
  if (v.readBigUInt64BE(0) !== IHAVEOPT) throw new NbdProtocolError('option request without the IHAVEOPT magic');
  return { option: v.readUInt32BE(8), length: v.readUInt32BE(12) };
}

/** One whole option request (client side). */
export function encodeOption(option: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  return Buffer.concat([encodeOptionHeader({ option, length: data.length }), data]);
}

export interface OptionReplyHeader {
  option: number;
  type: number;
  /** Bytes of reply data that follow the header. */
  length: number;
}

/** One whole option reply: header and data. */
export function encodeOptionReply(option: number, type: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(OPTION_REPLY_HEADER_BYTES + data.length);
  b.writeBigUInt64BE(OPTION_REPLY_MAGIC, 0);
  b.writeUInt32BE(option >>> 0, 8);
  b.writeUInt32BE(type >>> 0, 12);
  b.writeUInt32BE(data.length, 16);
  b.set(data, OPTION_REPLY_HEADER_BYTES);
  return b;
}

export function decodeOptionReplyHeader(b: Uint8Array): OptionReplyHeader {
  const v = messageView(b, OPTION_REPLY_HEADER_BYTES);
  if (v.readBigUInt64BE(0) !== OPTION_REPLY_MAGIC) throw new NbdProtocolError('option reply without its magic');
  return { option: v.readUInt32BE(8), type: v.readUInt32BE(12), length: v.readUInt32BE(16) };
}

/** The data of INFO and GO: the export name and the information types asked for. */
export interface InfoRequest {
  name: string;
  requests: number[];
}

export function encodeInfoRequest(r: InfoRequest): Buffer {
  const name = Buffer.from(r.name, 'utf8');
  const b = Buffer.alloc(4 + name.length + 2 + 2 * r.requests.length);
  b.writeUInt32BE(name.length, 0);
  name.copy(b, 4);
  b.writeUInt16BE(r.requests.length, 4 + name.length);
  r.requests.forEach((t, i) => b.writeUInt16BE(t, 6 + name.length + 2 * i));
  return b;
}

/** INFO/GO data, or null when it is malformed (lengths that do not add up: NBD_REP_ERR_INVALID). */
export function decodeInfoRequest(data: Uint8Array): InfoRequest | null {
  const v = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (v.length < 6) return null;
  const nameLength = v.readUInt32BE(0);
  if (nameLength > v.length - 6) return null;
  const count = v.readUInt16BE(4 + nameLength);
  if (v.length !== 6 + nameLength + 2 * count) return null;
  const requests: number[] = [];
  for (let i = 0; i < count; i++) requests.push(v.readUInt16BE(6 + nameLength + 2 * i));
  return { name: v.toString('utf8', 4, 4 + nameLength), requests };
}

/** NBD_REP_SERVER data: one export of a LIST reply. */
export function encodeServerEntry(name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(n.length, 0);
  n.copy(b, 4);
  return b;
}

export function decodeServerEntry(data: Uint8Array): string {
  const v = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (v.length < 4 || v.readUInt32BE(0) > v.length - 4) throw new NbdProtocolError('malformed NBD_REP_SERVER reply');
  return v.toString('utf8', 4, 4 + v.readUInt32BE(0));
}

// ---------------------------------------------------------------- NBD_REP_INFO payloads

export interface ExportInfo {
  size: number;
  flags: number;
}

export interface BlockSizeInfo {
  minimum: number;
  preferred: number;
  maximum: number;
}

export type Info =
  | { type: typeof INFO_EXPORT; size: number; flags: number }
  | { type: typeof INFO_NAME; name: string }
  | { type: typeof INFO_DESCRIPTION; description: string }
  | ({ type: typeof INFO_BLOCK_SIZE } & BlockSizeInfo)
  | { type: number; unknown: Buffer };

export function encodeInfo(info: Info): Buffer {
  if ('unknown' in info) throw new RangeError(`cannot encode unknown information type ${info.type}`);
  switch (info.type) {
    case INFO_EXPORT: {
      const b = Buffer.alloc(12);
      b.writeUInt16BE(INFO_EXPORT, 0);
      b.writeBigUInt64BE(BigInt(info.size), 2);
      b.writeUInt16BE(info.flags, 10);
      return b;
    }
    case INFO_BLOCK_SIZE: {
      const b = Buffer.alloc(14);
      b.writeUInt16BE(INFO_BLOCK_SIZE, 0);
      b.writeUInt32BE(info.minimum, 2);
      b.writeUInt32BE(info.preferred, 6);
      b.writeUInt32BE(info.maximum >>> 0, 10);
      return b;
    }
    case INFO_NAME:
    case INFO_DESCRIPTION: {
      const text = Buffer.from(info.type === INFO_NAME ? info.name : info.description, 'utf8');
      const b = Buffer.alloc(2 + text.length);
      b.writeUInt16BE(info.type, 0);
      text.copy(b, 2);
      return b;
    }
  }
}

/** An NBD_REP_INFO payload; types this codec does not know come back as `unknown`. */
export function decodeInfo(data: Uint8Array): Info {
  const v = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (v.length < 2) throw new NbdProtocolError('NBD_REP_INFO reply shorter than its type');
  const type = v.readUInt16BE(0);
  const expect = (n: number) => {
    if (v.length !== n) throw new NbdProtocolError(`NBD_REP_INFO type ${type} has length ${v.length}, not ${n}`);
  };
  switch (type) {
    case INFO_EXPORT:
      expect(12);
      return { type, size: Number(v.readBigUInt64BE(2)), flags: v.readUInt16BE(10) };
    case INFO_BLOCK_SIZE:
      expect(14);
      return { type, minimum: v.readUInt32BE(2), preferred: v.readUInt32BE(6), maximum: v.readUInt32BE(10) };
    case INFO_NAME:
      return { type, name: v.toString('utf8', 2) };
    case INFO_DESCRIPTION:
      return { type, description: v.toString('utf8', 2) };
    default:
      return { type, unknown: Buffer.from(v.subarray(2)) };
  }
}

/** The reply to EXPORT_NAME (no option reply header). */
export function encodeExportNameReply(e: ExportInfo, noZeroes: boolean): Buffer {
  const b = Buffer.alloc(noZeroes ? 10 : EXPORT_NAME_REPLY_BYTES);
  b.writeBigUInt64BE(BigInt(e.size), 0);
  b.writeUInt16BE(e.flags, 8);
  return b;
}

export function decodeExportNameReply(b: Uint8Array): ExportInfo {
  const v = messageView(b, 10);
  return { size: Number(v.readBigUInt64BE(0)), flags: v.readUInt16BE(8) };
}

// ---------------------------------------------------------------- metadata contexts

/** The data of LIST_META_CONTEXT and SET_META_CONTEXT. */
export interface MetaContextRequest {
  name: string;
  queries: string[];
}

export function encodeMetaContextRequest(r: MetaContextRequest): Buffer {
  const parts: Buffer[] = [];
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n, 0);
    parts.push(b);
  };
  const name = Buffer.from(r.name, 'utf8');
  u32(name.length);
  parts.push(name);
  u32(r.queries.length);
  for (const q of r.queries) {
    const qb = Buffer.from(q, 'utf8');
    u32(qb.length);
    parts.push(qb);
  }
  return Buffer.concat(parts);
}

/** Metadata context option data, or null when its lengths do not add up (NBD_REP_ERR_INVALID). */
export function decodeMetaContextRequest(data: Uint8Array): MetaContextRequest | null {
  const v = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (v.length < 8) return null;
  const nameLength = v.readUInt32BE(0);
  if (nameLength > v.length - 8) return null;
  const name = v.toString('utf8', 4, 4 + nameLength);
  let at = 4 + nameLength;
  const count = v.readUInt32BE(at);
  at += 4;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (v.length - at < 4) return null;
    const n = v.readUInt32BE(at);
    at += 4;
    if (n > v.length - at) return null;
    queries.push(v.toString('utf8', at, at + n));
    at += n;
  }
  return at === v.length ? { name, queries } : null;
}

/** NBD_REP_META_CONTEXT data: a context id and its name. */
export function encodeMetaContextReply(id: number, name: string): Buffer {
  const n = Buffer.from(name, 'utf8');
  const b = Buffer.alloc(4 + n.length);
  b.writeUInt32BE(id >>> 0, 0);
  n.copy(b, 4);
  return b;
}

export function decodeMetaContextReply(data: Uint8Array): { id: number; name: string } {
  const v = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (v.length < 4) throw new NbdProtocolError('malformed NBD_REP_META_CONTEXT reply');
  return { id: v.readUInt32BE(0), name: v.toString('utf8', 4) };
}


/** A Buffer view of b, which must hold at least `need` bytes (else the message is malformed). */
export function messageView(b: Uint8Array, need: number): Buffer {
  if (b.length < need) throw new NbdProtocolError(`NBD message of ${b.length} bytes, needs ${need}`);
  return Buffer.from(b.buffer, b.byteOffset, b.length);
}
