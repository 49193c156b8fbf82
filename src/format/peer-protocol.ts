// THE PEER PROTOCOL, version 1: how `imgstream serve peer` and its clients (dump, restore
// and verify with peer://, later mirror) talk. This file is its specification; the
// README section "Peer daemon" describes it for users.
//
// A connection is TCP, inside TLS unless both sides chose plain mode. In order:
//
//   connection := preamble (each way) AUTH (client) AUTH (daemon) HELLO (client) frame*
//
//   preamble (48 bytes): each side sends one as soon as the connection (and TLS) is up,
//   without waiting for the other's
//      0  magic "IMGSPEER"
//      8  u16 lowest protocol version this side speaks
//     10  u16 highest protocol version this side speaks
//     12  u32 zero (reserved)
//     16  32 bytes nonce: random, fresh for every connection
//   Both use the highest version both speak. With none in common the daemon sends an
//   error frame (version 1 framing, which every version keeps) and closes; the client
//   refuses as well.
//
//   frame (20-byte prefix, then the header, then the payload if any)
//      0  u32 header length: 2 .. 1 MiB (4 KiB until the client is authenticated)
//      4  u32 payload length: 0 .. 64 MiB (0 until the client is authenticated)
//      8  u16 flags: bit 0 PAYLOAD: a payload follows. Without it the payload length is 0
//                    and the message has none (null), which differs from an empty one
//     10  u16 zero
//     12  u32 crc32 of the header bytes followed by the payload bytes
//     16  u32 crc32 of prefix bytes 0..15: a damaged length is refused at once, before
//             its bytes are awaited or memory is set aside for them
//   The header is UTF-8 JSON of an object: the message. The payload is raw bytes.
//   Readers refuse a frame with unknown flags, a non-zero reserved field, a length out
//   of range, a checksum that does not match, or a header that is not a JSON object.
//
//   Messages every connection uses
//     error  {error: {code, message, hint?}}  code is an ErrorCode of src/core/errors.ts (an
//            unknown one is taken as "io"). The sender closes the connection after it.
//            A daemon that stops sends it to every connection it has open, at whatever
//            point the conversation is (during a service, between messages, before the
//            request): {code: "network", message: "the daemon is shutting down", hint}.
//            A message without a payload it was about to send (a "done") may come first.
//     AUTH   {type: "auth", mac: 64 hex digits}: HMAC-SHA256 keyed with the shared token
//            over authInput() below. The client sends its AUTH first; the daemon checks
//            it and only then answers with its own (or an error "auth" and close), so
//            the daemon computes no MAC for anyone who does not hold the token, and the
//            client checks that the daemon holds it too. The token itself never travels.
//     HELLO  {op, name?, ...}: the service asked for (op: lower-case words joined by
//            dots, e.g. "stream.put") and the name it works on: a relative path inside
//            the daemon's --root directory. A daemon without the service answers with
//            an error "invalid-input" and closes. What follows is the service's.
//
//   Service stream.put (store an image stream as the file ROOT/NAME)
//     C  HELLO {op: "stream.put", name, force: boolean}
//     D  {type: "ready"}                  the temporary file is open
//     C  {type: "data"} + payload         stream bytes, in order (any number)
//     C  {type: "end", bytes}             the stream is complete: bytes in all
//     D  {type: "done", bytes}            validated, fsynced and renamed into place
//     C  {type: "abort"}                  at any time: the stream will not be completed
//   The daemon parses the stream as it arrives and answers an error (and removes its
//   temporary file) when it is damaged or incomplete: ROOT/NAME appears only complete.
//
//   Service stream.get (read ROOT/NAME back)
//     C  HELLO {op: "stream.get", name}
//     D  {type: "stream", bytes}          the size that follows
//     D  {type: "data"} + payload ...
//     D  {type: "end", bytes}
//
// Multi-byte integers are little-endian.
import { crc32, crc32Range } from './crc32.js';
import { crc32Combine } from './crc32-combine.js';

export const PEER_MAGIC = 'IMGSPEER';
/** The versions this imgstream speaks. */
export const PEER_MIN_VERSION = 1;
export const PEER_MAX_VERSION = 1;
export const PEER_PREAMBLE_BYTES = 48;
export const PEER_NONCE_BYTES = 32;
export const PEER_PREFIX_BYTES = 20;
export const FLAG_PAYLOAD = 1;

/** Largest JSON header and payload of a frame. */
export const MAX_HEADER_BYTES = 1 << 20;
export const MAX_PAYLOAD_BYTES = 64 << 20;
/** Until the client is authenticated a frame is a small header and nothing else. */
export const PRE_AUTH_MAX_HEADER_BYTES = 4096;

/** TLS keying material bound into the AUTH MACs: RFC 5705 exporter, this label, an empty context, 32 bytes. */
export const CHANNEL_BINDING_BYTES = 32;
export const CHANNEL_BINDING_LABEL = 'EXPORTER-imgstream-peer-auth';

export class PeerFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PeerFormatError';
  }
}

export interface FrameLimits {
  maxHeaderBytes: number;
  maxPayloadBytes: number;
}

export const FULL_LIMITS: FrameLimits = { maxHeaderBytes: MAX_HEADER_BYTES, maxPayloadBytes: MAX_PAYLOAD_BYTES };
export const PRE_AUTH_LIMITS: FrameLimits = { maxHeaderBytes: PRE_AUTH_MAX_HEADER_BYTES, maxPayloadBytes: 0 };

// ------------------------------------------------------------------ preamble

export interface PeerPreamble {
  minVersion: number;
  maxVersion: number;
  nonce: Buffer;
}

export function encodePeerPreamble(nonce: Buffer, minVersion = PEER_MIN_VERSION, maxVersion = PEER_MAX_VERSION): Buffer {
  if (nonce.length !== PEER_NONCE_BYTES) throw new RangeError(`a peer nonce is ${PEER_NONCE_BYTES} bytes`);
  const b = Buffer.alloc(PEER_PREAMBLE_BYTES);
  b.write(PEER_MAGIC, 0, 'latin1');
  b.writeUInt16LE(minVersion, 8);
  b.writeUInt16LE(maxVersion, 10);
  nonce.copy(b, 16);
  return b;
}

export function decodePeerPreamble(b: Buffer): PeerPreamble {
  if (b.length !== PEER_PREAMBLE_BYTES || b.toString('latin1', 0, 8) !== PEER_MAGIC) throw new PeerFormatError('not an imgstream peer (bad magic)');
  const minVersion = b.readUInt16LE(8);
  const maxVersion = b.readUInt16LE(10);
  if (minVersion === 0 || minVersion > maxVersion || b.readUInt32LE(12) !== 0) throw new PeerFormatError('damaged peer preamble');
  return { minVersion, maxVersion, nonce: Buffer.from(b.subarray(16, 48)) };
}

/** The highest version both sides speak, or null. */
export function commonVersion(theirs: { minVersion: number; maxVersion: number }, min = PEER_MIN_VERSION, max = PEER_MAX_VERSION): number | null {
  const v = Math.min(max, theirs.maxVersion);
  return v >= Math.max(min, theirs.minVersion) ? v : null;
}

/** True when the bytes look like the start of a TLS handshake (a TLS client on a plain daemon). */
export function looksLikeTls(b: Buffer): boolean {
  return b.length >= 3 && b[0] === 0x16 && b[1] === 0x03 && b[2] <= 0x04;
}

// ------------------------------------------------------------------ frames

export type PeerMessageHeader = Record<string, unknown>;

export interface FramePrefix {
  headerLength: number;
  payloadLength: number;
  hasPayload: boolean;
  crc: number;
}

/**
 * The bytes of one frame: its prefix and header in one buffer, the payload (not copied)
 * apart. `payloadCrc`, the payload's own crc32 when the caller has it, saves a pass over it.
 */
export function encodePeerFrame(msg: PeerMessageHeader, payload: Buffer | null, limits: FrameLimits = FULL_LIMITS, payloadCrc?: number): { head: Buffer; payload: Buffer | null } {
  const head = encodePeerFrameHead(msg, payload === null ? null : { length: payload.length, crc: () => payloadCrc ?? crc32(payload) }, limits);
  return { head, payload };
}

/**
 * A frame's prefix and header, for a payload of `payload.length` bytes sent after it (in
 * one buffer or several: `crc` gives the crc32 of all of them in order), or none (null).
 */
export function encodePeerFrameHead(msg: PeerMessageHeader, payload: { length: number; crc: () => number } | null, limits: FrameLimits = FULL_LIMITS): Buffer {
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw new PeerFormatError('a peer message is a JSON object');
  const json = Buffer.from(JSON.stringify(msg), 'utf8');
  if (json.length > limits.maxHeaderBytes) throw new PeerFormatError(`message header of ${json.length} bytes exceeds the limit of ${limits.maxHeaderBytes}`);
  const payloadLength = payload?.length ?? 0;
  if (payloadLength > limits.maxPayloadBytes) throw new PeerFormatError(`payload of ${payloadLength} bytes exceeds the limit of ${limits.maxPayloadBytes}`);
  const head = Buffer.allocUnsafe(PEER_PREFIX_BYTES + json.length);
  head.writeUInt32LE(json.length, 0);
  head.writeUInt32LE(payloadLength, 4);
  head.writeUInt16LE(payload ? FLAG_PAYLOAD : 0, 8);
  head.writeUInt16LE(0, 10);
  let crc = crc32(json);
  if (payload) crc = crc32Combine(crc, payload.crc(), payloadLength);
  head.writeUInt32LE(crc >>> 0, 12);
  head.writeUInt32LE(crc32(head.subarray(0, 16)), 16);
  json.copy(head, PEER_PREFIX_BYTES);
  return head;
}

export function decodePeerPrefix(b: Buffer, limits: FrameLimits = FULL_LIMITS): FramePrefix {
  if (b.length < PEER_PREFIX_BYTES) throw new PeerFormatError('short frame prefix');
  if (crc32(b.subarray(0, 16)) !== b.readUInt32LE(16)) throw new PeerFormatError('damaged frame prefix (checksum)');
  const headerLength = b.readUInt32LE(0);
  const payloadLength = b.readUInt32LE(4);
  const flags = b.readUInt16LE(8);
  if ((flags & ~FLAG_PAYLOAD) !== 0 || b.readUInt16LE(10) !== 0) throw new PeerFormatError('damaged frame prefix (unknown flags)');
  const hasPayload = (flags & FLAG_PAYLOAD) !== 0;
  if (!hasPayload && payloadLength !== 0) throw new PeerFormatError('damaged frame prefix (a payload length without a payload)');
  if (headerLength < 2 || headerLength > limits.maxHeaderBytes) throw new PeerFormatError(`frame header of ${headerLength} bytes is out of range (2 to ${limits.maxHeaderBytes})`);
  if (payloadLength > limits.maxPayloadBytes || (hasPayload && limits.maxPayloadBytes === 0)) {
    throw new PeerFormatError(limits.maxPayloadBytes === 0 ? 'a payload before authentication' : `frame payload of ${payloadLength} bytes exceeds the limit of ${limits.maxPayloadBytes}`);
  }
  return { headerLength, payloadLength, hasPayload, crc: b.readUInt32LE(12) };
}

/**
 * Checks a frame's body against its prefix and parses the header; gives the payload's own
 * crc32 too (computed on the way), for a message that carries a checksum of its payload.
 * `unit`: when the payload is whole units of that many bytes, the crc32 of each is given
 * as well (unitCrcs) and the payload's is combined from them, so a receiver that keeps a
 * checksum of every block it stores reads the payload once, not twice.
 */
export function decodePeerMessage(prefix: FramePrefix, header: Buffer, payload: Buffer | null, unit = 0): { msg: PeerMessageHeader; payloadCrc: number | null; unitCrcs: Uint32Array | null } {
  let payloadCrc: number | null = null;
  let unitCrcs: Uint32Array | null = null;
  if (payload !== null && unit > 0 && payload.length > 0 && payload.length % unit === 0) {
    unitCrcs = new Uint32Array(payload.length / unit);
    let c = 0;
    for (let i = 0; i < unitCrcs.length; i++) {
      unitCrcs[i] = crc32Range(payload, i * unit, (i + 1) * unit);
      c = crc32Combine(c, unitCrcs[i], unit);
    }
    payloadCrc = c;
  } else if (payload !== null) payloadCrc = crc32(payload);
  let crc = crc32(header);
  if (payload) crc = crc32Combine(crc, payloadCrc!, payload.length);
  if ((crc >>> 0) !== prefix.crc) throw new PeerFormatError('damaged frame (checksum)');
  let msg: unknown;
  try {
    msg = JSON.parse(header.toString('utf8'));
  } catch {
    throw new PeerFormatError('damaged frame (header is not JSON)');
  }
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) throw new PeerFormatError('damaged frame (header is not a JSON object)');
  return { msg: msg as PeerMessageHeader, payloadCrc, unitCrcs };
}

// ------------------------------------------------------------------ authentication

export type PeerRole = 'client' | 'server';

/**
 * What each side's AUTH MAC covers: a label naming the role (a MAC cannot be reflected
 * to the other side), both preambles (both nonces, so no MAC is ever valid twice, and
 * both version ranges, so a downgrade is noticed), and in TLS the channel binding
 * (keying material exported from this TLS session: a MAC is worthless on another one).
 */
export function authInput(role: PeerRole, clientPreamble: Buffer, serverPreamble: Buffer, binding: Buffer | null): Buffer {
  return Buffer.concat([Buffer.from(`imgstream-peer auth ${role}\0`, 'latin1'), clientPreamble, serverPreamble, binding ?? Buffer.alloc(0)]);
}

export const MAC_HEX_LENGTH = 64;

// ------------------------------------------------------------------ errors on the wire

export interface PeerErrorBody {
  code: string;
  message: string;
  hint?: string;
}

/** The error of an error message, or null when the message is something else. */
export function errorOf(msg: PeerMessageHeader): PeerErrorBody | null {
  const e = msg.error as Partial<PeerErrorBody> | undefined;
  if (e === undefined) return null;
  if (e === null || typeof e !== 'object' || typeof e.code !== 'string' || typeof e.message !== 'string') return { code: 'io', message: 'the peer sent a malformed error' };
  return { code: e.code, message: e.message, ...(typeof e.hint === 'string' ? { hint: e.hint } : {}) };
}
