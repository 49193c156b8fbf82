// Deterministic pseudo-random words for benchmark data: Marsaglia's xorshift128. Seeded,
// so every run measures the same bytes; fill() keeps the state in locals so it writes
// gigabytes in seconds (crypto-quality randomness is not needed, only incompressible,
// non-repeating block contents).
export class Xorshift128 {
  private x: number;
  private y: number;
  private z: number;
  private w: number;

  constructor(seed: number) {
    // splitmix32 spreads a small seed over the four words of state
    let s = seed >>> 0;
    const mix = (): number => {
      s = (s + 0x9e3779b9) | 0;
      let t = s ^ (s >>> 16);
      t = Math.imul(t, 0x21f0aaad);
      t ^= t >>> 15;
      t = Math.imul(t, 0x735a2d97);
      return (t ^ (t >>> 15)) | 0;
    };
    this.x = mix();
    this.y = mix();
    this.z = mix();
    this.w = mix() | 1; // never all zero
  }

  /** The next word, 0 to 2^32 - 1. */
  next(): number {
    const t = this.x ^ (this.x << 11);
    this.x = this.y;
    this.y = this.z;
    this.z = this.w;
    this.w = this.w ^ (this.w >>> 19) ^ (t ^ (t >>> 8));
    return this.w >>> 0;
  }

  /** Uniform in [0, 1). */
  float(): number {
    return this.next() / 4294967296;
  }

  /** Uniform integer in [0, n). */
  below(n: number): number {
    return Math.floor(this.float() * n);
  }

  /** Fills words[from..to) with the next words of the sequence. */
  fill(words: Uint32Array, from = 0, to = words.length): void {
    let { x, y, z, w } = this;
    for (let i = from; i < to; i++) {
      const t = x ^ (x << 11);
      x = y;
      y = z;
      z = w;
      w = w ^ (w >>> 19) ^ (t ^ (t >>> 8));
      words[i] = w;
    }
    this.x = x;
    this.y = y;
    this.z = z;
    this.w = w;
  }
}
