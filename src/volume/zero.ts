// Whether a buffer holds only zeros: zero blocks are never stored (thin volumes).
const ZERO = Buffer.alloc(1 << 20);

export function isZero(b: Uint8Array): boolean {
  for (let off = 0; off < b.length; off += ZERO.length) {
    const n = Math.min(ZERO.length, b.length - off);
    // compare() with ranges: no views are made, so the check allocates nothing
    if (ZERO.compare(b, off, off + n, 0, n) !== 0) return false;
  }
  return true;
}
