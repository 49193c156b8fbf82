// Worker thread: turns record payloads into what is stored: one independent zstd frame
// (with zstd's content checksum) when that is smaller, else the raw bytes, and the crc32
// of the stored bytes. So records compress and checksum in parallel and verify one by one.
// Frames are compressed into output buffers the main thread hands back once written
// (ZSTD_compress2 into a given buffer), so a dump allocates no memory per record.
import { parentPort, workerData } from 'node:worker_threads';
import { crc32 } from '../format/crc32.js';
import zstd from 'zstd-napi/binding.js';
import { sealParts, type SealJob } from '../crypt/record-cipher.js';

const FLAG_ZSTD = 2;
const FLAG_SEALED = 4;

const level = (workerData as { level: number | null }).level;
let cctx: zstd.CCtx | null = null;
if (level !== null) {
  cctx = new zstd.CCtx();
  cctx.setParameter(zstd.CParameter.compressionLevel, level);
  cctx.setParameter(zstd.CParameter.checksumFlag, 1);
}

parentPort!.on('message', (msg: { id: number; buf: ArrayBuffer; length: number; out: ArrayBuffer | null; seal: SealJob | null }) => {
  const raw = new Uint8Array(msg.buf, 0, msg.length);
  if (cctx) {
    const bound = zstd.compressBound(msg.length);
    const out = msg.out && msg.out.byteLength >= bound ? msg.out : new ArrayBuffer(bound);
    const n = cctx.compress2(new Uint8Array(out), raw);
    if (n < msg.length && msg.seal) {
      // compressed, then sealed into a buffer of its own; both others go back for reuse
      const { body, tag } = sealParts(msg.seal, msg.seal.flags | FLAG_ZSTD | FLAG_SEALED, new Uint8Array(out, 0, n));
      parentPort!.postMessage({ id: msg.id, out: body.buffer, length: body.length, tag, compressed: true, crc: crc32(tag, crc32(body)), raw: msg.buf, spareOut: out, sealed: true }, [body.buffer as ArrayBuffer, out, msg.buf]);
      return;
    }
    if (n < msg.length) {
      // the raw buffer goes back too, to be reused for the next record
      parentPort!.postMessage({ id: msg.id, out, length: n, compressed: true, crc: crc32(new Uint8Array(out, 0, n)), raw: msg.buf }, [out, msg.buf]);
      return;
    }
    msg.out = out;
  }
  if (msg.seal) {
    const { body, tag } = sealParts(msg.seal, msg.seal.flags | FLAG_SEALED, raw);
    const transfer = msg.out ? [body.buffer as ArrayBuffer, msg.buf, msg.out] : [body.buffer as ArrayBuffer, msg.buf];
    parentPort!.postMessage({ id: msg.id, out: body.buffer, length: body.length, tag, compressed: false, crc: crc32(tag, crc32(body)), raw: msg.buf, spareOut: msg.out, sealed: true }, transfer);
    return;
  }
  const transfer = msg.out ? [msg.buf, msg.out] : [msg.buf];
  parentPort!.postMessage({ id: msg.id, out: msg.buf, length: msg.length, compressed: false, crc: crc32(raw), raw: null, spareOut: msg.out }, transfer);
});
