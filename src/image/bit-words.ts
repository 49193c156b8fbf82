// Word-level helpers over bit planes held as Uint32Arrays: bit b of word w is VBN
// base + w*32 + b. The bulk loops of image evaluation are in bit-kernel.wat; these are
// for the callers that look at a few words at a time (popcount of a map word) or walk
// the runs of an image (its extents, in VBN order).

/** Number of set bits in a 32-bit word (SWAR: pairs, nibbles, then bytes summed by a multiply). */
export function popcount32(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
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
