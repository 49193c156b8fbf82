// Worker thread: compresses record payloads into independent zstd frames (with zstd's
// content checksum), so chunks compress in parallel and verify one by one.
import { parentPort, workerData } from 'node:worker_threads';
import { Compressor } from 'zstd-napi';

const compressor = new Compressor();
compressor.setParameters({ compressionLevel: (workerData as { level: number }).level, checksumFlag: true });

parentPort!.on('message', (msg: { id: number; buf: ArrayBuffer; offset: number; length: number }) => {
  const out = compressor.compress(new Uint8Array(msg.buf, msg.offset, msg.length));
  if (out.length >= msg.length) {
    // did not shrink: hand the raw bytes back, to be stored uncompressed
    parentPort!.postMessage({ id: msg.id, out: msg.buf, compressed: false }, [msg.buf]);
    return;
  }
  const copy = out.byteOffset === 0 && out.byteLength === out.buffer.byteLength ? out.buffer : out.buffer.slice(out.byteOffset, out.byteOffset + out.byteLength);
  parentPort!.postMessage({ id: msg.id, out: copy, compressed: true }, [copy as ArrayBuffer]);
});
