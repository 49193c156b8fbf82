// Encodes record payloads on worker threads: zstd when it shrinks them (level given), and
// the crc32 of what is stored. On this thread when threads = 0, or when the worker script
// is not built (as under the test runner reading TypeScript sources).
import os from 'node:os';
import { Worker } from 'node:worker_threads';
import { crc32 } from '../format/crc32.js';
import { Compressor } from 'zstd-napi';
import { workerScript } from '../core/worker-script.js';
import { sealParts, type SealJob } from '../crypt/index.js';
import { FLAG_SEALED, FLAG_ZSTD } from '../format/image-stream.js';


/**
 * One worker per core, up to 4: the main thread mostly waits on reads and writes, and
 * compression is what takes the time (on 2 cores, 2 workers beat 1 by a third).
 */
export function defaultThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism()));
}

/** A payload as stored: one zstd frame, or the raw bytes when compressing did not shrink them. */
export interface Encoded {
  stored: Buffer;
  compressed: boolean;
  crc: number;
  /** The raw payload's buffer, free for reuse once the record is written (null: do not reuse). */
  spare: Buffer | null;
  /** Sealed (encrypted streams): stored is the ciphertext, and `tag` follows it in the stream. */
  sealed?: boolean;
  tag?: Buffer;
}

export class CompressPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (r: Encoded) => void; reject: (e: Error) => void }>();
  private next = 0;
  /** Output buffers for compressed frames, back from the writer once written. */
  private readonly outSpares: ArrayBuffer[] = [];
  private local: Compressor | null = null;
  private readonly localOnly: boolean;

  /** level null: checksum only, no compression. */
  constructor(readonly level: number | null, threads: number) {
    // named from dist/src, so the CLI bundle (dist/src/cli/) finds it too
    const script = threads > 0 ? workerScript(new URL('../stream/compress-worker.js', import.meta.url)) : null;
    this.localOnly = !script;
    if (!script) {
      if (level !== null) {
        this.local = new Compressor();
        this.local.setParameters({ compressionLevel: level, checksumFlag: true });
      }
      return;
    }
    for (let i = 0; i < threads; i++) {
      const w = new Worker(script, { workerData: { level } });
      w.on('message', (m: { id: number; out: ArrayBuffer; length: number; compressed: boolean; crc: number; raw: ArrayBuffer | null; spareOut?: ArrayBuffer | null; sealed?: boolean; tag?: Uint8Array }) => {
        const p = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        if (m.spareOut) this.outSpares.push(m.spareOut);
        const stored = Buffer.from(m.out, 0, m.length);
        if (m.sealed) p?.resolve({ stored, compressed: m.compressed, crc: m.crc, spare: m.raw ? Buffer.from(m.raw) : null, sealed: true, tag: Buffer.from(m.tag!) });
        else p?.resolve({ stored, compressed: m.compressed, crc: m.crc, spare: m.compressed ? (m.raw ? Buffer.from(m.raw) : null) : stored });
      });
      w.on('error', (err) => {
        for (const p of this.waiting.values()) p.reject(err);
        this.waiting.clear();
      });
      this.workers.push(w);
    }
  }

  /**
   * Encodes one payload. A payload that owns its whole ArrayBuffer is transferred to the
   * worker (the caller must not touch it afterwards); `spare` hands a buffer back for reuse.
   */
  encode(raw: Buffer, seal: SealJob | null = null): Promise<Encoded> {
    if (this.localOnly) {
      let stored = raw;
      let compressed = false;
      if (this.local) {
        const out = this.local.compress(raw);
        if (out.length < raw.length) [stored, compressed] = [out, true];
      }
      if (seal) {
        const { body, tag } = sealParts(seal, seal.flags | FLAG_SEALED | (compressed ? FLAG_ZSTD : 0), stored);
        return Promise.resolve({ stored: body, compressed, crc: crc32(tag, crc32(body)), spare: raw, sealed: true, tag });
      }
      return Promise.resolve({ stored, compressed, crc: crc32(stored), spare: raw });
    }
    const id = this.next++;
    const w = this.workers[id % this.workers.length];
    const whole = raw.byteOffset === 0;
    const buf = whole ? raw.buffer : raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
    const out = this.level !== null ? (this.outSpares.pop() ?? null) : null;
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      w.postMessage({ id, buf, length: raw.byteLength, out, seal }, out ? [buf as ArrayBuffer, out] : [buf as ArrayBuffer]);
    });
  }

  /** Gives back the buffer of a compressed payload once it is written, for the next frame. */
  recycle(e: Encoded): void {
    if (e.compressed && !e.sealed && !this.localOnly && this.outSpares.length < 2 * this.workers.length + 4) this.outSpares.push(e.stored.buffer as ArrayBuffer);
  }

  get parallel(): number {
    return Math.max(1, this.workers.length);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
