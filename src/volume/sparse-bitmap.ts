// A set of VBNs kept as bitmap chunks allocated on first use: cheap for the few thousand
// VBNs a CP touches, bounded for the millions a large import touches. Chunks have the
// same geometry as plane blocks so they can be OR-ed into an allocation mask directly.
export class SparseBitmap {
  private readonly chunks = new Map<number, Uint32Array>();
  private count = 0;
  constructor(readonly wordsPerChunk: number) {}

  private get bitsPerChunk(): number {
    return this.wordsPerChunk * 32;
  }

  has(v: number): boolean {
    const c = this.chunks.get(Math.floor(v / this.bitsPerChunk));
    if (!c) return false;
    const b = v % this.bitsPerChunk;
    return (c[b >>> 5] & (1 << (b & 31))) !== 0;
  }

  add(v: number): void {
    const ci = Math.floor(v / this.bitsPerChunk);
    let c = this.chunks.get(ci);
    if (!c) this.chunks.set(ci, (c = new Uint32Array(this.wordsPerChunk)));
    const b = v % this.bitsPerChunk;
    const m = 1 << (b & 31);
    if ((c[b >>> 5] & m) === 0) {
      c[b >>> 5] |= m;
      this.count++;
    }
  }

  delete(v: number): void {
    const c = this.chunks.get(Math.floor(v / this.bitsPerChunk));
    if (!c) return;
    const b = v % this.bitsPerChunk;
    const m = 1 << (b & 31);
    if ((c[b >>> 5] & m) !== 0) {
      c[b >>> 5] &= ~m;
      this.count--;
    }
  }

  /** Adds every bit set in `words` as chunk c. */
  orChunk(c: number, words: Uint32Array): void {
    for (let i = 0; i < words.length; i++) {
      let x = words[i];
      while (x !== 0) {
        const bit = 31 - Math.clz32(x & -x);
        x &= x - 1;
        this.add(c * this.bitsPerChunk + i * 32 + bit);
      }
    }
  }

  /** Words of chunk c, or undefined when no bit of it is set. */
  chunk(c: number): Uint32Array | undefined {
    return this.chunks.get(c);
  }

  get size(): number {
    return this.count;
  }

  clear(): void {
    this.chunks.clear();
    this.count = 0;
  }

  *values(): IterableIterator<number> {
    const keys = [...this.chunks.keys()].sort((a, b) => a - b);
    for (const ci of keys) {
      const c = this.chunks.get(ci)!;
      for (let w = 0; w < c.length; w++) {
        let x = c[w];
        while (x !== 0) {
          const bit = 31 - Math.clz32(x & -x);
          x &= x - 1;
          yield ci * this.bitsPerChunk + w * 32 + bit;
        }
      }
    }
  }
}
