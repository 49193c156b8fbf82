// A set of logical block numbers kept as a bitmap: a page of PAGE_BYTES per PAGE_BITS
// blocks, allocated when a bit in it is first set. Its memory grows with how the blocks
// spread over the disk, at most one bit per block, never with the number of changes; a
// range (a trim of a whole disk) costs its pages, not an entry per block. For blocks
// changed without journal records (after a journal overflows, an import, a restore), where
// a list or a Set of numbers outgrows memory on a large disk (a Set holds at most 2^24).
// Pages changed since the last takeTouched() are tracked, so a saved copy is updated in
// place (dirty-blocks.ts).

export const PAGE_BYTES = 4096;
export const PAGE_BITS = PAGE_BYTES * 8;

/** Bits set in each byte value. */
const POPCOUNT = new Uint8Array(256);
for (let i = 1; i < 256; i++) POPCOUNT[i] = (i & 1) + POPCOUNT[i >> 1];

export class BlockSet {
  private readonly pages = new Map<number, Uint8Array>();
  private readonly touched = new Set<number>();
  private count = 0;

  /** A set holding `lbns`. */
  static of(lbns: Iterable<number>): BlockSet {
    const s = new BlockSet();
    for (const l of lbns) s.add(l);
    return s;
  }

  /** Blocks in the set. */
  get size(): number {
    return this.count;
  }

  has(lbn: number): boolean {
    const page = this.pages.get(Math.floor(lbn / PAGE_BITS));
    if (!page) return false;
    const bit = lbn % PAGE_BITS;
    return (page[bit >> 3] & (1 << (bit & 7))) !== 0;
  }

  add(lbn: number): void {
    const p = Math.floor(lbn / PAGE_BITS);
    const page = this.page(p);
    const bit = lbn % PAGE_BITS;
    const mask = 1 << (bit & 7);
    if ((page[bit >> 3] & mask) !== 0) return;
    page[bit >> 3] |= mask;
    this.count++;
    this.touched.add(p);
  }

  /** Adds LBNs [lbn, lbn + n). */
  addRange(lbn: number, n: number): void {
    const end = lbn + n;
    let at = lbn;
    while (at < end) {
      const p = Math.floor(at / PAGE_BITS);
      const base = p * PAGE_BITS;
      const stop = Math.min(end, base + PAGE_BITS) - base;
      const page = this.page(p);
      const before = this.count;
      let bit = at - base;
      for (; bit < stop && (bit & 7) !== 0; bit++) this.setBit(page, bit);
      for (; bit + 8 <= stop; bit += 8) {
        const b = page[bit >> 3];
        if (b === 0xff) continue;
        this.count += 8 - POPCOUNT[b];
        page[bit >> 3] = 0xff;
      }
      for (; bit < stop; bit++) this.setBit(page, bit);
      if (this.count !== before) this.touched.add(p);
      at = base + stop;
    }
  }

  /** Adds every block of `other`. */
  addAll(other: BlockSet): void {
    for (const [p, src] of other.pages) {
      const page = this.page(p);
      let changed = false;
      for (let i = 0; i < PAGE_BYTES; i++) {
        const b = page[i];
        const merged = b | src[i];
        if (merged === b) continue;
        this.count += POPCOUNT[merged] - POPCOUNT[b];
        page[i] = merged;
        changed = true;
      }
      if (changed) this.touched.add(p);
    }
  }

  /** The non-zero bytes of the pages, ascending: the LBN of each byte's bit 0, and the byte. */
  private *setBytes(): Generator<[number, number]> {
    for (const p of this.pageNumbers()) {
      const page = this.pages.get(p)!;
      const base = p * PAGE_BITS;
      for (let i = 0; i < PAGE_BYTES; i++) if (page[i] !== 0) yield [base + i * 8, page[i]];
    }
  }

  /** The LBNs, ascending. */
  *values(): Generator<number> {
    for (const [at, b] of this.setBytes()) for (let k = 0; k < 8; k++) if ((b & (1 << k)) !== 0) yield at + k;
  }

  /** The blocks held as maximal runs, [first, end) ascending: cost ∝ the set's pages, not its blocks. */
  *runs(): Generator<[number, number]> {
    let first = -1;
    let end = -1;
    for (const [at, b] of this.setBytes()) {
      if (b === 0xff && end === at) {
        end = at + 8; // a full byte that goes on the run (most of a large trim's)
        continue;
      }
      for (let k = 0; k < 8; k++) {
        if ((b & (1 << k)) === 0) continue;
        if (end !== at + k) {
          if (first >= 0) yield [first, end];
          first = at + k;
        }
        end = at + k + 1;
      }
    }
    if (first >= 0) yield [first, end];
  }

  [Symbol.iterator](): Generator<number> {
    return this.values();
  }

  /** Numbers of the pages that hold blocks, ascending. */
  pageNumbers(): number[] {
    return [...this.pages.keys()].sort((a, b) => a - b);
  }

  /** Page `p`'s bits (bit k of byte i: block p * PAGE_BITS + 8i + k), or null when none is set. */
  pageBits(p: number): Uint8Array | null {
    return this.pages.get(p) ?? null;
  }

  /** Sets page `p`'s bits from a saved copy, adding to what is set (not counted as touched). */
  loadPage(p: number, bits: Uint8Array): void {
    if (bits.length !== PAGE_BYTES) throw new RangeError(`a page of a block set is ${PAGE_BYTES} bytes, not ${bits.length}`);
    let any = false;
    for (let i = 0; i < PAGE_BYTES && !any; i++) any = bits[i] !== 0;
    if (!any) return;
    const page = this.page(p);
    for (let i = 0; i < PAGE_BYTES; i++) {
      const b = page[i];
      const merged = b | bits[i];
      this.count += POPCOUNT[merged] - POPCOUNT[b];
      page[i] = merged;
    }
  }

  /** The pages changed since the last call (or since the set began), ascending; forgets them. */
  takeTouched(): number[] {
    const out = [...this.touched].sort((a, b) => a - b);
    this.touched.clear();
    return out;
  }

  private page(p: number): Uint8Array {
    let page = this.pages.get(p);
    if (!page) this.pages.set(p, (page = new Uint8Array(PAGE_BYTES)));
    return page;
  }

  private setBit(page: Uint8Array, bit: number): void {
    const mask = 1 << (bit & 7);
    if ((page[bit >> 3] & mask) !== 0) return;
    page[bit >> 3] |= mask;
    this.count++;
  }
}
