// Page-aligned buffers, for direct I/O (O_DIRECT wants the memory, not only the file
// offset, aligned to the device's block size). Node allocates Buffers with malloc, 16-byte
// aligned at best, and has no aligned allocator; the memory of a WebAssembly.Memory is
// page-aligned (V8 maps it with mmap). Nothing here relies on that blindly: a direct write
// from memory that is not aligned fails with EINVAL, which DirectAppender takes as "no
// direct I/O here" and writes through the page cache instead.
import { WASM_PAGE_BYTES, wasm } from './webassembly.js';

/** `count` buffers of `bytes` each (a multiple of 4096), page-aligned, in one fixed memory. */
export function alignedBuffers(count: number, bytes: number): Buffer[] {
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % 4096 !== 0) throw new Error(`aligned buffers of ${bytes} bytes: not a multiple of 4096`);
  const pages = Math.ceil((count * bytes) / WASM_PAGE_BYTES);
  const memory = new wasm.Memory({ initial: pages, maximum: pages });
  return Array.from({ length: count }, (_, i) => Buffer.from(memory.buffer, i * bytes, bytes));
}
