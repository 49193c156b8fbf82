// The NBD transmission phase's messages as pure encode/decode pairs: requests, simple
// replies, structured reply chunks (OFFSET_DATA, OFFSET_HOLE, BLOCK_STATUS, ERROR), and
// command names for messages. Their layouts, and the magic numbers and flags they use,
// are specified in nbd-protocol.ts beside the handshake and option messages.
import {
  CHUNK_HEADER_BYTES,
  CMD_BLOCK_STATUS,
  CMD_CACHE,
  CMD_DISC,
  CMD_FLUSH,
  CMD_READ,
  CMD_TRIM,
  CMD_WRITE,
  CMD_WRITE_ZEROES,
  MAX_STRING_BYTES,
  NbdProtocolError,
  REPLY_FLAG_DONE,
  REPLY_TYPE_BLOCK_STATUS,
  REPLY_TYPE_ERROR,
  REPLY_TYPE_NONE,
  REPLY_TYPE_OFFSET_HOLE,
  REQUEST_BYTES,
  REQUEST_MAGIC,
  SIMPLE_REPLY_BYTES,
  SIMPLE_REPLY_MAGIC,
  STRUCTURED_REPLY_MAGIC,
  messageView,
} from './nbd-protocol.js';

// ---------------------------------------------------------------- transmission

export interface NbdRequest {
  flags: number;
  type: number;
  /** Opaque to the server: echoed in the reply. */
  cookie: Buffer;
  /**
   * Byte offset. Offsets past 2^53 cannot be exact in a number, but every one of them is
   * past the end of any export, which is all the server needs to know.
   */
  offset: number;
  length: number;
}

export function encodeRequest(r: NbdRequest): Buffer {
  const b = Buffer.alloc(REQUEST_BYTES);
  b.writeUInt32BE(REQUEST_MAGIC, 0);
  b.writeUInt16BE(r.flags, 4);
  b.writeUInt16BE(r.type, 6);
  Buffer.from(r.cookie).copy(b, 8, 0, 8);
  b.writeBigUInt64BE(BigInt(r.offset), 16);
  b.writeUInt32BE(r.length >>> 0, 24);
  return b;
}

/** A request header. Throws NbdProtocolError when the magic is wrong (the session is lost). */
export function decodeRequest(b: Uint8Array): NbdRequest {
  const v = messageView(b, REQUEST_BYTES);
  if (v.readUInt32BE(0) !== REQUEST_MAGIC) throw new NbdProtocolError(`request with a wrong magic 0x${v.readUInt32BE(0).toString(16)}`);
  return {
    flags: v.readUInt16BE(4),
    type: v.readUInt16BE(6),
    cookie: Buffer.from(v.subarray(8, 16)),
    offset: Number(v.readBigUInt64BE(16)),
    length: v.readUInt32BE(24),
  };
}

/** The header of a simple reply, written into `into` at `at` (the READ path puts data right after it). */
export function encodeSimpleReply(error: number, cookie: Uint8Array, into: Buffer = Buffer.alloc(SIMPLE_REPLY_BYTES), at = 0): Buffer {
  into.writeUInt32BE(SIMPLE_REPLY_MAGIC, at);
  into.writeUInt32BE(error >>> 0, at + 4);
  into.set(cookie.subarray(0, 8), at + 8);
  return into;
}

export interface SimpleReply {
  error: number;
  cookie: Buffer;
}

export function decodeSimpleReply(b: Uint8Array): SimpleReply {
  const v = messageView(b, SIMPLE_REPLY_BYTES);
  const magic = v.readUInt32BE(0);
  if (magic !== SIMPLE_REPLY_MAGIC) throw new NbdProtocolError(`reply with a wrong magic 0x${magic.toString(16)}`);
  return { error: v.readUInt32BE(4), cookie: Buffer.from(v.subarray(8, 16)) };
}

// ---------------------------------------------------------------- structured replies

/** A chunk header written into `into` at `at`; its payload of `length` bytes follows it. */
export function encodeChunkHeader(flags: number, type: number, cookie: Uint8Array, length: number, into: Buffer = Buffer.alloc(CHUNK_HEADER_BYTES), at = 0): Buffer {
  into.writeUInt32BE(STRUCTURED_REPLY_MAGIC, at);
  into.writeUInt16BE(flags, at + 4);
  into.writeUInt16BE(type, at + 6);
  into.set(cookie.subarray(0, 8), at + 8);
  into.writeUInt32BE(length >>> 0, at + 16);
  return into;
}

export interface ChunkHeader {
  flags: number;
  type: number;
  cookie: Buffer;
  length: number;
}

export function decodeChunkHeader(b: Uint8Array): ChunkHeader {
  const v = messageView(b, CHUNK_HEADER_BYTES);
  const magic = v.readUInt32BE(0);
  if (magic !== STRUCTURED_REPLY_MAGIC) throw new NbdProtocolError(`structured reply with a wrong magic 0x${magic.toString(16)}`);
  return { flags: v.readUInt16BE(4), type: v.readUInt16BE(6), cookie: Buffer.from(v.subarray(8, 16)), length: v.readUInt32BE(16) };
}

/** An OFFSET_HOLE chunk: `length` bytes at `offset` read as zeros. */
export function encodeHoleChunk(flags: number, cookie: Uint8Array, offset: number, length: number): Buffer {
  const b = encodeChunkHeader(flags, REPLY_TYPE_OFFSET_HOLE, cookie, 12, Buffer.alloc(CHUNK_HEADER_BYTES + 12));
  b.writeBigUInt64BE(BigInt(offset), CHUNK_HEADER_BYTES);
  b.writeUInt32BE(length >>> 0, CHUNK_HEADER_BYTES + 8);
  return b;
}

/** An ERROR chunk (always the last: FLAG_DONE) carrying a message for a human. */
export function encodeErrorChunk(error: number, cookie: Uint8Array, message = ''): Buffer {
  const m = Buffer.from(message, 'utf8').subarray(0, MAX_STRING_BYTES);
  const b = encodeChunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, 6 + m.length, Buffer.alloc(CHUNK_HEADER_BYTES + 6 + m.length));
  b.writeUInt32BE(error >>> 0, CHUNK_HEADER_BYTES);
  b.writeUInt16BE(m.length, CHUNK_HEADER_BYTES + 4);
  m.copy(b, CHUNK_HEADER_BYTES + 6);
  return b;
}

/** A successful reply without payload (FLAG_DONE, type NONE). */
export function encodeDoneChunk(cookie: Uint8Array): Buffer {
  return encodeChunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_NONE, cookie, 0);
}

/** One extent of a block status reply. */
export interface BlockStatusExtent {
  length: number;
  flags: number;
}

/** A BLOCK_STATUS chunk for one context. */
export function encodeBlockStatusChunk(flags: number, cookie: Uint8Array, contextId: number, extents: BlockStatusExtent[]): Buffer {
  const n = 4 + 8 * extents.length;
  const b = encodeChunkHeader(flags, REPLY_TYPE_BLOCK_STATUS, cookie, n, Buffer.alloc(CHUNK_HEADER_BYTES + n));
  b.writeUInt32BE(contextId >>> 0, CHUNK_HEADER_BYTES);
  extents.forEach((e, i) => {
    b.writeUInt32BE(e.length >>> 0, CHUNK_HEADER_BYTES + 4 + 8 * i);
    b.writeUInt32BE(e.flags >>> 0, CHUNK_HEADER_BYTES + 8 + 8 * i);
  });
  return b;
}

export function decodeBlockStatusPayload(data: Uint8Array): { contextId: number; extents: BlockStatusExtent[] } {
  const v = Buffer.from(data.buffer, data.byteOffset, data.length);
  if (v.length < 12 || (v.length - 4) % 8 !== 0) throw new NbdProtocolError(`block status payload of ${v.length} bytes`);
  const extents: BlockStatusExtent[] = [];
  for (let at = 4; at < v.length; at += 8) extents.push({ length: v.readUInt32BE(at), flags: v.readUInt32BE(at + 4) });
  return { contextId: v.readUInt32BE(0), extents };
}

// ---------------------------------------------------------------- names for messages

const COMMAND_NAMES: Record<number, string> = {
  [CMD_READ]: 'READ',
  [CMD_WRITE]: 'WRITE',
  [CMD_DISC]: 'DISC',
  [CMD_FLUSH]: 'FLUSH',
  [CMD_TRIM]: 'TRIM',
  [CMD_CACHE]: 'CACHE',
  [CMD_WRITE_ZEROES]: 'WRITE_ZEROES',
  [CMD_BLOCK_STATUS]: 'BLOCK_STATUS',
};

export function commandName(type: number): string {
  return COMMAND_NAMES[type] ?? `command ${type}`;
}

