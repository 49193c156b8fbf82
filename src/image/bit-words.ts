// Word-level bit plane arithmetic: the tight loops storage images are made of. Bit b of
// word w is VBN base + w*32 + b. Every loop takes Uint32Arrays only, so each stays
// monomorphic; none allocates.
//
// The loops are unrolled by eight, which nearly halves V8's time per word (fewer bounds
// checks and loop branches). The "Grouped" variants, used for an image's last operation,
// also record per group of GROUP_WORDS words the OR of the words they wrote: counting
// then skips all-zero groups with one test instead of eight, which is what keeps a sparse
// incremental image cheap.

export const GROUP_WORDS = 8;

/** Length of the group summary for n words. */
export function groupCount(n: number): number {
  return Math.ceil(n / GROUP_WORDS);
}

/** d[i] |= s[i] for i < n. */
export function orWords(d: Uint32Array, s: Uint32Array, n: number): void {
  let i = 0;
  for (const end = n - 7; i < end; i += 8) {
    d[i] |= s[i];
    d[i + 1] |= s[i + 1];
    d[i + 2] |= s[i + 2];
    d[i + 3] |= s[i + 3];
    d[i + 4] |= s[i + 4];
    d[i + 5] |= s[i + 5];
    d[i + 6] |= s[i + 6];
    d[i + 7] |= s[i + 7];
  }
  for (; i < n; i++) d[i] |= s[i];
}

/** d[i] |= s[i] for i < n; groups[g] = OR of d's words in group g. */
export function orWordsGrouped(d: Uint32Array, s: Uint32Array, n: number, groups: Uint32Array): void {
  let i = 0;
  for (const end = n - 7; i < end; i += 8) {
    groups[i >>> 3] =
      (d[i] |= s[i]) | (d[i + 1] |= s[i + 1]) | (d[i + 2] |= s[i + 2]) | (d[i + 3] |= s[i + 3]) |
      (d[i + 4] |= s[i + 4]) | (d[i + 5] |= s[i + 5]) | (d[i + 6] |= s[i + 6]) | (d[i + 7] |= s[i + 7]);
  }
  if (i < n) {
    let any = 0;
    for (; i < n; i++) any |= d[i] |= s[i];
    groups[(n - 1) >>> 3] = any;
  }
}

/** d[i] &= s[i] for i < n. */
export function andWords(d: Uint32Array, s: Uint32Array, n: number): void {
  let i = 0;
  for (const end = n - 7; i < end; i += 8) {
    d[i] &= s[i];
    d[i + 1] &= s[i + 1];
    d[i + 2] &= s[i + 2];
    d[i + 3] &= s[i + 3];
    d[i + 4] &= s[i + 4];
    d[i + 5] &= s[i + 5];
    d[i + 6] &= s[i + 6];
    d[i + 7] &= s[i + 7];
  }
  for (; i < n; i++) d[i] &= s[i];
}

/** d[i] &= s[i] for i < n; groups[g] = OR of d's words in group g. */
export function andWordsGrouped(d: Uint32Array, s: Uint32Array, n: number, groups: Uint32Array): void {
  let i = 0;
  for (const end = n - 7; i < end; i += 8) {
    groups[i >>> 3] =
      (d[i] &= s[i]) | (d[i + 1] &= s[i + 1]) | (d[i + 2] &= s[i + 2]) | (d[i + 3] &= s[i + 3]) |
      (d[i + 4] &= s[i + 4]) | (d[i + 5] &= s[i + 5]) | (d[i + 6] &= s[i + 6]) | (d[i + 7] &= s[i + 7]);
  }
  if (i < n) {
    let any = 0;
    for (; i < n; i++) any |= d[i] &= s[i];
    groups[(n - 1) >>> 3] = any;
  }
}

/** d[i] &= ~s[i] for i < n. */
export function andNotWords(d: Uint32Array, s: Uint32Array, n: number): void {
  let i = 0;
  for (const end = n - 7; i < end; i += 8) {
    d[i] &= ~s[i];
    d[i + 1] &= ~s[i + 1];
    d[i + 2] &= ~s[i + 2];
    d[i + 3] &= ~s[i + 3];
    d[i + 4] &= ~s[i + 4];
    d[i + 5] &= ~s[i + 5];
    d[i + 6] &= ~s[i + 6];
    d[i + 7] &= ~s[i + 7];
  }
  for (; i < n; i++) d[i] &= ~s[i];
}

/** d[i] &= ~s[i] for i < n; groups[g] = OR of d's words in group g. */
export function andNotWordsGrouped(d: Uint32Array, s: Uint32Array, n: number, groups: Uint32Array): void {
  let i = 0;
  for (const end = n - 7; i < end; i += 8) {
    groups[i >>> 3] =
      (d[i] &= ~s[i]) | (d[i + 1] &= ~s[i + 1]) | (d[i + 2] &= ~s[i + 2]) | (d[i + 3] &= ~s[i + 3]) |
      (d[i + 4] &= ~s[i + 4]) | (d[i + 5] &= ~s[i + 5]) | (d[i + 6] &= ~s[i + 6]) | (d[i + 7] &= ~s[i + 7]);
  }
  if (i < n) {
    let any = 0;
    for (; i < n; i++) any |= d[i] &= ~s[i];
    groups[(n - 1) >>> 3] = any;
  }
}

/** groups[g] = OR of the words of group g, for words written without an operation (a copy). */
export function summarizeGroups(words: Uint32Array, n: number, groups: Uint32Array): void {
  for (let i = 0; i < n; i += GROUP_WORDS) {
    let any = 0;
    const end = Math.min(i + GROUP_WORDS, n);
    for (let j = i; j < end; j++) any |= words[j];
    groups[i >>> 3] = any;
  }
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

  /** Adds words[0..n), whose group summary (see orWordsGrouped) is groups. */
  add(words: Uint32Array, groups: Uint32Array, n: number): void {
    let blocks = this.blocks;
    let extents = this.extents;
    let carry = this.carry;
    for (let i = 0; i < n; i += GROUP_WORDS) {
      if (groups[i >>> 3] === 0) {
        carry = 0;
        continue;
      }
      // Branch-free inside a group (mixed words would defeat the branch predictor): the
      // per-byte bit counts (popcount32's first three steps) of the words and of their run
      // starts are summed over the group, then folded to numbers once per group.
      let wordBytes = 0; // bytes <= 8 * 8
      let startBytes = 0; // bytes <= 8 * 4: no two starts are adjacent
      const end = Math.min(i + GROUP_WORDS, n);
      for (let j = i; j < end; j++) {
        const w = words[j] | 0;
        // A run starts at a set bit whose lower neighbour (or the carry) is clear.
        const s = w & ~((w << 1) | carry);
        carry = w >>> 31;
        let x = w - ((w >>> 1) & 0x55555555);
        x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
        wordBytes += (x + (x >>> 4)) & 0x0f0f0f0f;
        let y = s - ((s >>> 1) & 0x55555555);
        y = (y & 0x33333333) + ((y >>> 2) & 0x33333333);
        startBytes += (y + (y >>> 4)) & 0x0f0f0f0f;
      }
      // Up to 256 set bits: fold bytes to 16-bit halves before adding them up.
      wordBytes = (wordBytes & 0x00ff00ff) + ((wordBytes >>> 8) & 0x00ff00ff);
      blocks += (wordBytes & 0xffff) + (wordBytes >>> 16);
      extents += Math.imul(startBytes, 0x01010101) >>> 24;
    }
    this.blocks = blocks;
    this.extents = extents;
    this.carry = carry;
  }
}
