// Worker thread: turns record payloads into what is stored: one independent zstd frame
// (with zstd's content checksum) when that is smaller, else the raw bytes, and the crc32
// of the stored bytes. So records compress and checksum in parallel and verify one by one.
import { parentPort, workerData } from 'node:worker_threads';
import { crc32 } from 'node:zlib';
import { Compressor } from 'zstd-napi';

const level = (workerData as { level: number | null }).level;
let compressor: Compressor | null = null;
if (level !== null) {
  compressor = new Compressor();
  compressor.setParameters({ compressionLevel: level, checksumFlag: true });
}

parentPort!.on('message', (msg: { id: number; buf: ArrayBuffer; length: number }) => {
  const raw = new Uint8Array(msg.buf, 0, msg.length);
  if (compressor) {
    const out = compressor.compress(raw);
    if (out.length < msg.length) {
      const copy = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out.buffer : out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength);
      // the raw buffer goes back too, to be reused for the next record
      parentPort!.postMessage({ id: msg.id, out: copy, length: out.length, compressed: true, crc: crc32(out) >>> 0, raw: msg.buf }, [copy as ArrayBuffer, msg.buf]);
      return;
    }
  }
  parentPort!.postMessage({ id: msg.id, out: msg.buf, length: msg.length, compressed: false, crc: crc32(raw) >>> 0, raw: null }, [msg.buf]);
});
