// What the media tests write and how they read it back: deterministic pseudo-random
// stream bytes, a way to cut them into writes of given sizes, and collecting a stream.
import { createCipheriv, createHash } from 'node:crypto';
import type { SourceStream, StreamSource, StreamTarget, MediaPosition } from '../../src/media/medium.js';

/** `n` incompressible bytes, the same for the same seed (AES-CTR over zeros). */
export function streamBytes(n: number, seed: number): Buffer {
  const key = createHash('sha256').update(`imgstream-media-test-${seed}`).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(n));
}

/** Writes `data` in writes of the given sizes (cycled), each from a buffer reused afterwards like a caller's. */
export async function writeInPieces(target: StreamTarget, data: Buffer, sizes: number[]): Promise<number> {
  let writes = 0;
  for (let off = 0, i = 0; off < data.length; i++) {
    const n = Math.min(sizes[i % sizes.length], data.length - off);
    const scratch = Buffer.from(data.subarray(off, off + n));
    await target.write(scratch);
    scratch.fill(0xa5); // the medium must have taken its own copy or written the bytes
    off += n;
    writes++;
  }
  return writes;
}

export async function collect(bytes: AsyncIterable<Buffer>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of bytes) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

export interface ReadBack {
  name: string;
  position: MediaPosition;
  bytes: Buffer;
}

/** Every stream of the sources, in order, with its bytes. */
export async function readAll(sources: StreamSource[]): Promise<ReadBack[]> {
  const out: ReadBack[] = [];
  for (const src of sources) {
    for await (const s of src.streams() as AsyncIterable<SourceStream>) out.push({ name: s.name, position: s.position, bytes: await collect(s.bytes) });
  }
  return out;
}

/** Rejects if `p` has not settled within `ms`: a reader must never hang. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms (hang)`)), ms);
    }),
  ]);
}
