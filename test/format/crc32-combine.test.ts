// crc32Combine against node:zlib's crc32 of the concatenation, for arbitrary parts
// (empty ones and lengths across byte-count bit patterns included).
import { crc32 } from 'node:zlib';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { crc32Combine } from '../../src/format/crc32-combine.js';

describe('crc32Combine', () => {
  it('crc32(A || B) from crc32(A), crc32(B) and |B|', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 5000 }), (a, b) => {
        const whole = crc32(Buffer.concat([a, b])) >>> 0;
        expect(crc32Combine(crc32(a) >>> 0, crc32(b) >>> 0, b.length)).toBe(whole);
      }),
      { numRuns: 300 },
    );
  });

  it('holds for a payload of a mirror record size, and refuses a bad length', () => {
    const a = Buffer.from('{"rec":1,"kind":"data"}');
    const b = Buffer.alloc((1 << 20) + 4104);
    for (let i = 0; i < b.length; i++) b[i] = (i * 2654435761) >>> 24;
    expect(crc32Combine(crc32(a), crc32(b), b.length)).toBe(crc32(Buffer.concat([a, b])) >>> 0);
    expect(() => crc32Combine(1, 2, -1)).toThrow(RangeError);
  });
});
