// crc32 of a concatenation from the crc32s of its parts: crc(A || B) from crc(A), crc(B)
// and the length of B, in O(log length) (the method of zlib's crc32_combine: appending n
// zero bits to a crc is a linear map over GF(2), applied by repeated squaring). It lets a
// frame checksum that covers a header and a payload reuse a crc32 of the payload alone
// that was computed anyway, instead of reading the payload twice. Node's zlib does not
// export crc32_combine.

/** The reflected CRC-32 polynomial (IEEE 802.3), as zlib and node:zlib's crc32 use. */
const POLY = 0xedb88320;

function times(mat: Uint32Array, vec: number): number {
  let sum = 0;
  for (let i = 0; vec !== 0; i++, vec >>>= 1) if (vec & 1) sum ^= mat[i];
  return sum >>> 0;
}

function square(out: Uint32Array, mat: Uint32Array): void {
  for (let n = 0; n < 32; n++) out[n] = times(mat, mat[n]);
}

/**
 * Operators for the lengths seen last (frames mostly have a few record sizes), each as
 * four tables of 256 (its image of every value of each byte of a crc): applying one is
 * four lookups instead of a pass over 32 bits, once per block when blocks' checksums are
 * combined into a frame's.
 */
const cache = new Map<number, Uint32Array>();
const CACHE_SIZE = 64;
/** The last one used, looked up first: a run of blocks of one size asks for the same one again and again. */
let lastLength = NaN;
let lastTables: Uint32Array = new Uint32Array(1024);

/** crc32(A || B), given crc32(A), crc32(B) and B's length in bytes. */
export function crc32Combine(crcA: number, crcB: number, lengthB: number): number {
  if (lengthB !== lastLength) {
    if (!(Number.isSafeInteger(lengthB) && lengthB >= 0)) throw new RangeError(`crc32Combine: bad length ${lengthB}`);
    if (lengthB === 0) return crcA >>> 0;
    let tables = cache.get(lengthB);
    if (!tables) {
      tables = byteTables(zerosOperator(lengthB));
      if (cache.size >= CACHE_SIZE) cache.delete(cache.keys().next().value!);
      cache.set(lengthB, tables);
    }
    lastLength = lengthB;
    lastTables = tables;
  }
  const t = lastTables;
  const a = crcA >>> 0;
  return (t[a & 0xff] ^ t[256 + ((a >>> 8) & 0xff)] ^ t[512 + ((a >>> 16) & 0xff)] ^ t[768 + (a >>> 24)] ^ crcB) >>> 0;
}

/** An operator as byte tables: entry 256 * k + v is its image of byte value v at byte k. */
function byteTables(op: Uint32Array): Uint32Array {
  const t = new Uint32Array(1024);
  for (let k = 0; k < 4; k++) for (let v = 0; v < 256; v++) t[256 * k + v] = times(op, v << (8 * k));
  return t;
}

/** The operator that appends `length` zero bytes to a crc (column n: its image of bit n). */
function zerosOperator(length: number): Uint32Array {
  const odd = new Uint32Array(32); // the operator for one zero bit
  const even = new Uint32Array(32);
  odd[0] = POLY;
  for (let n = 1, row = 1; n < 32; n++, row <<= 1) odd[n] = row >>> 0;
  square(even, odd); // two zero bits
  square(odd, even); // four zero bits
  // the product of the operators for 2^k zero bytes over the bits k of length (they
  // commute: all are powers of one); the first squaring gives one zero byte
  let op: Uint32Array | null = null;
  let len = length;
  for (;;) {
    square(even, odd);
    if (len % 2 === 1) op = op ? compose(even, op) : even.slice();
    len = Math.floor(len / 2);
    if (len === 0) break;
    square(odd, even);
    if (len % 2 === 1) op = op ? compose(odd, op) : odd.slice();
    len = Math.floor(len / 2);
    if (len === 0) break;
  }
  return op!;
}

/** a after b. */
function compose(a: Uint32Array, b: Uint32Array): Uint32Array {
  const out = new Uint32Array(32);
  for (let n = 0; n < 32; n++) out[n] = times(a, b[n]);
  return out;
}
