import { describe, expect, it } from 'vitest';
import { InvalidInputError } from '../../src/core/errors.js';
import { MemoryPlaneSource } from '../../src/image/index.js';

describe('MemoryPlaneSource', () => {
  it('derives the chunk geometry from nblocks and blockSize', () => {
    const s = new MemoryPlaneSource({ nblocks: 65, blockSize: 8, planes: [] });
    expect([s.wordsPerChunk, s.chunks]).toEqual([2, 2]);
    expect(new MemoryPlaneSource({ nblocks: 64, blockSize: 8, planes: [] }).chunks).toBe(1);
    expect(new MemoryPlaneSource({ nblocks: 2 ** 20, blockSize: 4096, planes: [] }).chunks).toBe(32);
  });

  it('places VBN v at bit v%32 of word v/32 of its chunk', () => {
    const s = new MemoryPlaneSource({ nblocks: 100, blockSize: 8, planes: [{ name: 'a', snapshot: true, bits: new Set([0, 33, 64, 99]) }] });
    expect([...s.chunk(0, 0)]).toEqual([1, 2]);
    expect([...s.chunk(0, 1)]).toEqual([1, 1 << 3]);
  });

  it('zeroes the bits at VBNs >= nblocks of word planes', () => {
    const s = new MemoryPlaneSource({ nblocks: 40, blockSize: 16, planes: [{ name: 'a', snapshot: true, bits: new Uint32Array(9).fill(0xffffffff) }] });
    expect([...s.chunk(0, 0)]).toEqual([0xffffffff, 0xff, 0, 0]);
    expect(s.chunks).toBe(1);
  });

  it('refuses VBNs outside the volume, duplicate names and bad block sizes', () => {
    expect(() => new MemoryPlaneSource({ nblocks: 10, blockSize: 4, planes: [{ name: 'a', snapshot: true, bits: new Set([10]) }] })).toThrow(
      'plane "a": VBN 10 is outside 0..9',
    );
    const twice = { name: 'a', snapshot: true, bits: new Set<number>() };
    expect(() => new MemoryPlaneSource({ nblocks: 10, blockSize: 4, planes: [twice, twice] })).toThrow(InvalidInputError);
    expect(() => new MemoryPlaneSource({ nblocks: 10, blockSize: 6, planes: [] })).toThrow('invalid block size 6');
    expect(() => new MemoryPlaneSource({ nblocks: 10, blockSize: 2, planes: [] })).toThrow(InvalidInputError);
  });

  it('resolves names to refs and lists them', () => {
    const s = new MemoryPlaneSource({
      nblocks: 8,
      blockSize: 4,
      planes: [
        { name: 'june3', snapshot: true, bits: new Set() },
        { name: 'active', snapshot: false, bits: new Set() },
      ],
    });
    expect(s.resolve('active')).toEqual({ id: 1, name: 'active', snapshot: false });
    expect(s.resolve('june3')?.snapshot).toBe(true);
    expect(s.resolve('june4')).toBeUndefined();
    expect(s.names()).toEqual(['june3', 'active']);
  });

  it('by default overwrites one buffer on every chunk() call, like a file-backed source', () => {
    const planes = [
      { name: 'a', snapshot: true, bits: new Set([0]) },
      { name: 'b', snapshot: true, bits: new Set([1]) },
    ];
    const shared = new MemoryPlaneSource({ nblocks: 32, blockSize: 4, planes });
    const first = shared.chunk(0, 0);
    shared.chunk(1, 0);
    expect(first[0]).toBe(2); // plane a's chunk was overwritten by plane b's
    const views = new MemoryPlaneSource({ nblocks: 32, blockSize: 4, planes, reuseBuffer: false });
    const a = views.chunk(0, 0);
    views.chunk(1, 0);
    expect(a[0]).toBe(1);
    expect(shared.chunkReads).toBe(2);
  });

  it('refuses chunks and planes that do not exist', () => {
    const s = new MemoryPlaneSource({ nblocks: 32, blockSize: 4, planes: [{ name: 'a', snapshot: true, bits: new Set() }] });
    expect(() => s.chunk(0, 1)).toThrow(RangeError);
    expect(() => s.chunk(1, 0)).toThrow(RangeError);
  });
});
