// The bytes of a READ reply, laid out in one buffer before the data is read into it:
// a simple reply (16-byte header, then the data), one structured OFFSET_DATA chunk (when
// the client set DF, or the range is all data), or one structured chunk per piece of the
// range: OFFSET_HOLE for unmapped runs (12 bytes, no data on the wire) and OFFSET_DATA
// for mapped ones, the last flagged DONE. Pure layout: the caller reads the runs.
import {
  CHUNK_HEADER_BYTES,
  NBD_OK,
  REPLY_FLAG_DONE,
  REPLY_TYPE_OFFSET_DATA,
  REPLY_TYPE_OFFSET_HOLE,
  SIMPLE_REPLY_BYTES,
} from '../format/nbd-protocol.js';
import {
  encodeChunkHeader,
  encodeSimpleReply,
  type NbdRequest,
} from '../format/nbd-transmission.js';
import type { LogicalExtent, LogicalReadRun } from '../volume/logical-io.js';

export interface ReadReplyLayout {
  /** The whole reply; the runs' `into` are parts of it. */
  buf: Buffer;
  /** What to read from the volume file into the reply. */
  runs: LogicalReadRun[];
}

/**
 * Lays out the reply to READ `r` over `extents` (planLogicalExtents of its range) in a
 * buffer from `take`. `holes`: send unmapped runs as OFFSET_HOLE chunks (structured
 * replies without DF); `structured`: chunks rather than a simple reply.
 */
export function layoutReadReply(r: NbdRequest, extents: LogicalExtent[], holes: boolean, structured: boolean, take: (n: number) => Buffer): ReadReplyLayout {
  const runs: LogicalReadRun[] = [];
  if (!holes || extents.every((e) => e.position >= 0)) {
    const head = structured ? CHUNK_HEADER_BYTES + 8 : SIMPLE_REPLY_BYTES;
    const buf = take(head + r.length);
    if (structured) {
      encodeChunkHeader(REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, r.cookie, 8 + r.length, buf);
      buf.writeBigUInt64BE(BigInt(r.offset), CHUNK_HEADER_BYTES);
    } else encodeSimpleReply(NBD_OK, r.cookie, buf);
    for (const e of extents) {
      const into = buf.subarray(head + e.offset - r.offset, head + e.offset - r.offset + e.length);
      if (e.position < 0) into.fill(0);
      else runs.push({ into, position: e.position });
    }
    return { buf, runs };
  }
  const size = extents.reduce((a, e) => a + CHUNK_HEADER_BYTES + 8 + (e.position < 0 ? 4 : e.length), 0);
  const buf = take(size);
  let at = 0;
  extents.forEach((e, i) => {
    const flags = i === extents.length - 1 ? REPLY_FLAG_DONE : 0;
    const hole = e.position < 0;
    encodeChunkHeader(flags, hole ? REPLY_TYPE_OFFSET_HOLE : REPLY_TYPE_OFFSET_DATA, r.cookie, 8 + (hole ? 4 : e.length), buf, at);
    buf.writeBigUInt64BE(BigInt(e.offset), at + CHUNK_HEADER_BYTES);
    at += CHUNK_HEADER_BYTES + 8;
    if (hole) {
      buf.writeUInt32BE(e.length, at);
      at += 4;
    } else {
      runs.push({ into: buf.subarray(at, at + e.length), position: e.position });
      at += e.length;
    }
  });
  return { buf, runs };
}
