// The crc32 every checksum in imgstream's formats uses: CRC-32 as in zlib (IEEE 802.3,
// reflected, initial and final value 0xffffffff), with an optional running value to
// continue from. Records are checksummed as they are written, sent, received, restored
// and verified, so over a full dump, mirror or restore this runs on gigabytes:
// @node-rs/crc32 computes it with the CPU's carry-less multiply (10-12 GB/s on this
// project's machines, against 4.3-4.5 GB/s for node:zlib's crc32, the same 1 MiB
// payloads). Where that package's prebuilt binary is missing or fails its self-test,
// node:zlib's crc32 gives the same values. A call into either costs more than a few dozen
// bytes do (about 0.3 µs, plus a view to pass), and every journal record, frame prefix and
// header has a checksum of 16 to 40 bytes: those are computed here in JavaScript.
import { createRequire } from 'node:module';
import { crc32 as zlibCrc32 } from 'node:zlib';

export type Crc32 = (data: Uint8Array, value?: number) => number;

/** A check value: the crc32 of "123456789" is 0xcbf43926 (the catalogue value of CRC-32). */
const CHECK = { input: Buffer.from('123456789'), crc: 0xcbf43926 };

function load(): { crc32: Crc32; source: 'node-rs' | 'zlib' } {
  try {
    const mod = createRequire(import.meta.url)('@node-rs/crc32') as { crc32: (data: Uint8Array, value?: number) => number };
    const fast = (data: Uint8Array, value?: number) => mod.crc32(data, value) >>> 0;
    const continued = fast(CHECK.input.subarray(4), fast(CHECK.input.subarray(0, 4)));
    if (fast(CHECK.input) === CHECK.crc && continued === CHECK.crc && fast(Buffer.alloc(0)) === 0) return { crc32: fast, source: 'node-rs' };
  } catch {
    // no binary for this platform: zlib's below
  }
  return { crc32: (data, value) => zlibCrc32(data, value) >>> 0, source: 'zlib' };
}

// loaded on the first checksum, not when the module is (most commands' starts need none)
let loaded: { crc32: Crc32; source: 'node-rs' | 'zlib' } | null = null;

/** Inputs up to this long are checksummed in JavaScript (0.1 µs for 40 bytes, against 0.3-0.4 µs for a native call; measured). */
const SMALL_BYTES = 64;

/** The byte-at-a-time table of the reflected polynomial. */
const TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

function crc32Small(data: Uint8Array, start: number, end: number, value: number): number {
  let c = ~value;
  for (let i = start; i < end; i++) c = TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** crc32 of `data`, continuing from `value` (the crc32 of what came before it), unsigned. */
export const crc32: Crc32 = (data, value) => (data.length <= SMALL_BYTES ? crc32Small(data, 0, data.length, value ?? 0) : (loaded ??= load()).crc32(data, value));

/** crc32 of data[start..end), as crc32(data.subarray(start, end), value) without making the view when the range is small. */
export function crc32Range(data: Uint8Array, start: number, end: number, value = 0): number {
  return end - start <= SMALL_BYTES ? crc32Small(data, start, end, value) : (loaded ??= load()).crc32(data.subarray(start, end), value);
}

/** Which implementation computes it. */
export function crc32Source(): 'node-rs' | 'zlib' {
  return (loaded ??= load()).source;
}
