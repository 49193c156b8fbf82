// Word-level bit plane arithmetic: the tight loops storage images are made of. Bit b of
// word w is VBN base + w*32 + b. Every loop takes Uint32Arrays only, so each stays
// monomorphic; none allocates.

// The loops are unrolled by four: a chunk is 1024 words at 4 KiB blocks, and unrolling
// nearly halves the time V8 spends per word (fewer bounds checks and loop branches).

/** d[i] |= s[i] for i < n. */
export function orWords(d: Uint32Array, s: Uint32Array, n: number): void {
  let i = 0;
  for (const end = n - 3; i < end; i += 4) {
    d[i] |= s[i];
    d[i + 1] |= s[i + 1];
    d[i + 2] |= s[i + 2];
    d[i + 3] |= s[i + 3];
  }
  for (; i < n; i++) d[i] |= s[i];
}

/** d[i] &= s[i] for i < n. */
export function andWords(d: Uint32Array, s: Uint32Array, n: number): void {
  let i = 0;
  for (const end = n - 3; i < end; i += 4) {
    d[i] &= s[i];
    d[i + 1] &= s[i + 1];
    d[i + 2] &= s[i + 2];
    d[i + 3] &= s[i + 3];
  }
  for (; i < n; i++) d[i] &= s[i];
}

/** d[i] &= ~s[i] for i < n. */
export function andNotWords(d: Uint32Array, s: Uint32Array, n: number): void {
  let i = 0;
  for (const end = n - 3; i < end; i += 4) {
    d[i] &= ~s[i];
    d[i + 1] &= ~s[i + 1];
    d[i + 2] &= ~s[i + 2];
    d[i + 3] &= ~s[i + 3];
  }
  for (; i < n; i++) d[i] &= ~s[i];
}

/** Number of set bits in a 32-bit word (SWAR: pairs, nibbles, then bytes summed by a multiply). */
export function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** True when any of the first n words has a bit set. */
export function anyBitSet(words: Uint32Array, n: number = words.length): boolean {
  for (let i = 0; i < n; i++) if (words[i] !== 0) return true;
  return false;
}

/**
 * Calls cb(firstVbn, count) for each maximal run of set bits in words[0..n), in VBN order,
 * where bit b of word w is VBN baseVbn + w*32 + b. Runs crossing word boundaries are
 * joined; a run touching the end of the array is reported up to there, so a caller that
 * walks consecutive chunks joins a run whose first VBN equals the previous run's end.
 */
export function forEachExtent(
  words: Uint32Array,
  baseVbn: number,
  cb: (firstVbn: number, count: number) => void,
  n: number = words.length,
): void {
  let runStart = -1; // first VBN of the open run, or -1
  for (let i = 0; i < n; i++) {
    const w = words[i] | 0;
    const base = baseVbn + i * 32;
    if (w === 0) {
      if (runStart >= 0) {
        cb(runStart, base - runStart);
        runStart = -1;
      }
      continue;
    }
    if (w === -1) {
      if (runStart < 0) runStart = base;
      continue;
    }
    // x holds the bits still to look at: ones while looking for a run's start, zeros
    // (as ones of ~w) while looking for its end.
    let x = runStart >= 0 ? ~w : w;
    while (x !== 0) {
      const bit = 31 - Math.clz32(x & -x);
      if (runStart < 0) {
        runStart = base + bit;
        x = ~w & (-1 << bit);
      } else {
        cb(runStart, base + bit - runStart);
        runStart = -1;
        x = w & (-1 << bit);
      }
    }
  }
  if (runStart >= 0) cb(runStart, baseVbn + n * 32 - runStart);
}

/**
 * Counts set bits and extents (maximal runs of consecutive set VBNs) over words fed in
 * VBN order, chunk after chunk: a run continuing across a word or chunk boundary counts once.
 */
export class BitTally {
  blocks = 0;
  extents = 0;
  /** Bit 31 of the last word fed: 1 when a run may continue into the next word. */
  private carry = 0;

  add(words: Uint32Array, n: number): void {
    let blocks = this.blocks;
    let extents = this.extents;
    let carry = this.carry;
    for (let i = 0; i < n; i++) {
      const w = words[i] | 0;
      if (w === 0) {
        carry = 0;
        continue;
      }
      if (w === -1) {
        blocks += 32;
        extents += 1 - carry;
        carry = 1;
        continue;
      }
      blocks += popcount32(w);
      // A run starts at a set bit whose lower neighbour (or the carry) is clear.
      const starts = w & ~((w << 1) | carry);
      if (starts !== 0) extents += popcount32(starts);
      carry = w >>> 31;
    }
    this.blocks = blocks;
    this.extents = extents;
    this.carry = carry;
  }
}
