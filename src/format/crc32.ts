// The crc32 every checksum in imgstream's formats uses: CRC-32 as in zlib (IEEE 802.3,
// reflected, initial and final value 0xffffffff), with an optional running value to
// continue from. Records are checksummed as they are written, sent, received, restored
// and verified, so over a full dump, mirror or restore this runs on gigabytes:
// @node-rs/crc32 computes it with the CPU's carry-less multiply (10-12 GB/s on this
// project's machines, against 4.3-4.5 GB/s for node:zlib's crc32, the same 1 MiB
// payloads). Where that package's prebuilt binary is missing or fails its self-test,
// node:zlib's crc32 gives the same values.
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

/** crc32 of `data`, continuing from `value` (the crc32 of what came before it), unsigned. */
export const crc32: Crc32 = (data, value) => (loaded ??= load()).crc32(data, value);

/** Which implementation computes it. */
export function crc32Source(): 'node-rs' | 'zlib' {
  return (loaded ??= load()).source;
}
