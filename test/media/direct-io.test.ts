// direct-io's allocator of aligned buffers: aligned up to its limit, plain after, so a
// consumer that never gives buffers back does not map a fresh memory for every read.
import { describe, expect, it } from 'vitest';
import { AlignedAllocator, isDirectAligned } from '../../src/fs/direct-io.js';

describe('AlignedAllocator', () => {
  it('gives page-aligned buffers up to its limit, then plain ones of the same size', () => {
    const a = new AlignedAllocator(3);
    const bufs = Array.from({ length: 5 }, () => a.take(1 << 20));
    expect(bufs.map((b) => b.length)).toEqual(Array(5).fill(1 << 20));
    expect(bufs.map((b) => isDirectAligned(b))).toEqual([true, true, true, false, false]);
    expect(new Set(bufs.map((b) => b.buffer)).size).toBe(5); // each its own memory
  });
});
