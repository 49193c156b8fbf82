// Compresses payloads on worker threads (or on this thread when threads = 0, or when the
// worker script is not built, as under the test runner reading TypeScript sources).
import fs from 'node:fs';
import os from 'node:os';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { Compressor } from 'zstd-napi';

function workerScript(): string | null {
  const here = fileURLToPath(new URL('./compress-worker.js', import.meta.url));
  if (fs.existsSync(here)) return here;
  // running from TypeScript sources: use the built worker when there is one
  const built = here.replace(/\/src\/stream\/compress-worker\.js$/, '/dist/src/stream/compress-worker.js');
  return fs.existsSync(built) ? built : null;
}

/** A payload as stored: one zstd frame, or the raw bytes when compressing did not shrink them. */
export interface Compressed {
  stored: Buffer;
  compressed: boolean;
}

export function defaultThreads(): number {
  return Math.max(1, Math.min(4, os.availableParallelism()));
}

export class CompressPool {
  private readonly workers: Worker[] = [];
  private readonly waiting = new Map<number, { resolve: (r: Compressed) => void; reject: (e: Error) => void }>();
  private next = 0;
  private local: Compressor | null = null;

  constructor(readonly level: number, threads: number) {
    const script = threads > 0 ? workerScript() : null;
    if (!script) {
      this.local = new Compressor();
      this.local.setParameters({ compressionLevel: level, checksumFlag: true });
      return;
    }
    for (let i = 0; i < threads; i++) {
      const w = new Worker(script, { workerData: { level } });
      w.on('message', (m: { id: number; out: ArrayBuffer; compressed: boolean }) => {
        const p = this.waiting.get(m.id);
        this.waiting.delete(m.id);
        p?.resolve({ stored: Buffer.from(m.out), compressed: m.compressed });
      });
      w.on('error', (err) => {
        for (const p of this.waiting.values()) p.reject(err);
        this.waiting.clear();
      });
      this.workers.push(w);
    }
  }

  /** Compresses one payload into one zstd frame. The payload must not be used afterwards (it may be transferred). */
  compress(raw: Buffer): Promise<Compressed> {
    if (this.local) {
      const out = this.local.compress(raw);
      return Promise.resolve(out.length < raw.length ? { stored: out, compressed: true } : { stored: raw, compressed: false });
    }
    const id = this.next++;
    const w = this.workers[id % this.workers.length];
    const whole = raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength;
    const buf = whole ? raw.buffer : raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength);
    return new Promise((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      w.postMessage({ id, buf, offset: 0, length: raw.byteLength }, [buf as ArrayBuffer]);
    });
  }

  get parallel(): number {
    return Math.max(1, this.workers.length);
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
    this.workers.length = 0;
  }
}
