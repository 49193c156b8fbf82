// What direct I/O (O_DIRECT) needs, shared by DirectAppender and WriteBehind: a second
// descriptor opened with the flag, writes of whole aligned units, and page-aligned
// buffers (O_DIRECT wants the memory, not only the file offset, aligned to the device's
// block size). Node allocates Buffers with malloc, 16-byte
// aligned at best, and has no aligned allocator; the memory of a WebAssembly.Memory is
// page-aligned (V8 maps it with mmap). Nothing here relies on that blindly: a direct write
// from memory that is not aligned fails with EINVAL, which DirectAppender takes as "no
// direct I/O here" and writes through the page cache instead.
import fs from 'node:fs';
import { WASM_PAGE_BYTES, wasm } from '../core/webassembly.js';

/** Offsets and lengths of direct writes are multiples of this (a page: any device block size up to 4 KiB). */
export const DIRECT_UNIT = 4096;

/** A second descriptor on `file`, write-only with O_DIRECT, or null where the platform or file system has none. */
export function openDirect(file: string): number | null {
  const flag = fs.constants.O_DIRECT;
  if (!flag) return null;
  try {
    return fs.openSync(file, fs.constants.O_WRONLY | flag);
  } catch {
    return null;
  }
}

/** Writes data[0..length) at `at` on libuv's threads, looping over short writes. */
export async function writeFully(fd: number, data: Uint8Array, length: number, at: number): Promise<void> {
  for (let done = 0; done < length; ) {
    done += await new Promise<number>((resolve, reject) =>
      fs.write(fd, data, done, length - done, at + done, (err, n) => (err ? reject(err) : resolve(n))),
    );
  }
}

/** The memories alignedBuffers() made: a view into one at a multiple of DIRECT_UNIT is aligned. */
const alignedMemories = new WeakSet<ArrayBufferLike>();

/** `count` buffers of `bytes` each (a multiple of 4096), page-aligned, in one fixed memory. */
export function alignedBuffers(count: number, bytes: number): Buffer[] {
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % 4096 !== 0) throw new Error(`aligned buffers of ${bytes} bytes: not a multiple of 4096`);
  const pages = Math.ceil((count * bytes) / WASM_PAGE_BYTES);
  const memory = new wasm.Memory({ initial: pages, maximum: pages });
  alignedMemories.add(memory.buffer);
  return Array.from({ length: count }, (_, i) => Buffer.from(memory.buffer, i * bytes, bytes));
}

/**
 * True when `buf` starts at a multiple of DIRECT_UNIT in memory that alignedBuffers()
 * made, so a direct write may be made from it as it is. JavaScript cannot see an
 * address: this knows only the buffers it handed out, and says false for any other.
 */
export function isDirectAligned(buf: Uint8Array): boolean {
  return buf.byteOffset % DIRECT_UNIT === 0 && alignedMemories.has(buf.buffer);
}

/**
 * Buffers page-aligned for the first `limit` asked for, plain (malloc) after. Each aligned
 * one is a WebAssembly.Memory of its own: freshly mapped, so making one per read for a
 * consumer that never gives buffers back (verify) cost twice the time of malloc, which
 * reuses freed memory. A consumer that gives them back reuses the first few.
 */
export class AlignedAllocator {
  private made = 0;

  constructor(private readonly limit: number) {}

  /** A buffer of `bytes` (a multiple of 4096). */
  take(bytes: number): Buffer {
    if (this.made >= this.limit) return Buffer.allocUnsafeSlow(bytes);
    this.made++;
    return alignedBuffers(1, bytes)[0];
  }
}
