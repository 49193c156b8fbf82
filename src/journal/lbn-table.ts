// A map from logical block numbers to numbers, for an interval's blocks: an
// open-addressing hash table in one Float64Array (key and value side by side, linear
// probing, half full at most). A Map of tens of thousands of blocks cost a shipper under
// load its largest share of JavaScript time looking entries up (its table is a heap
// object, grown by copies, each one garbage for the major collector); here a lookup is
// mostly one cache line.

/** Slots (key, value pairs) of a new table: 2^INITIAL_BITS. */
const INITIAL_BITS = 12;
const INITIAL_SLOTS = 1 << INITIAL_BITS;
/** A slot without a key. */
const EMPTY = -1;

export class LbnTable {
  /** Slot i: key at 2i, value at 2i + 1; EMPTY keys are free. */
  private slots = new Float64Array(2 * INITIAL_SLOTS).fill(EMPTY);
  private mask = INITIAL_SLOTS - 1;
  /** 32 - log2(slots): a slot is the top bits of a 32-bit hash. */
  private shift = 32 - INITIAL_BITS;
  /** Entries held. */
  size = 0;

  /** The value of `lbn`, or -1 when it has none. */
  get(lbn: number): number {
    const s = this.slots;
    for (let i = this.home(lbn); ; i = (i + 1) & this.mask) {
      const k = s[2 * i];
      if (k === lbn) return s[2 * i + 1];
      if (k === EMPTY) return -1;
    }
  }

  /** Sets the value of `lbn` (a safe integer >= 0) to `value` (any number but -1, which get() answers for none). */
  set(lbn: number, value: number): void {
    const s = this.slots;
    for (let i = this.home(lbn); ; i = (i + 1) & this.mask) {
      const k = s[2 * i];
      if (k === lbn) {
        s[2 * i + 1] = value;
        return;
      }
      if (k === EMPTY) {
        s[2 * i] = lbn;
        s[2 * i + 1] = value;
        if (++this.size * 2 > this.mask + 1) this.grow();
        return;
      }
    }
  }

  /** Removes `lbn`'s entry, if any. */
  delete(lbn: number): void {
    const s = this.slots;
    const mask = this.mask;
    let i = this.home(lbn);
    for (; ; i = (i + 1) & mask) {
      const k = s[2 * i];
      if (k === EMPTY) return;
      if (k === lbn) break;
    }
    // backward-shift deletion: the entries after it in its cluster that may move into the hole do
    let hole = i;
    for (let j = (i + 1) & mask; ; j = (j + 1) & mask) {
      const k = s[2 * j];
      if (k === EMPTY) break;
      const h = this.home(k);
      // k stays where it is when its home lies cyclically in (hole, j]
      if (hole <= j ? h > hole && h <= j : h > hole || h <= j) continue;
      s[2 * hole] = k;
      s[2 * hole + 1] = s[2 * j + 1];
      hole = j;
    }
    s[2 * hole] = EMPTY;
    this.size--;
  }

  /** The keys, in no particular order. */
  keys(): Float64Array {
    const out = new Float64Array(this.size);
    const s = this.slots;
    let n = 0;
    for (let i = 0; i < s.length; i += 2) if (s[i] !== EMPTY) out[n++] = s[i];
    return out;
  }

  clear(): void {
    if (this.size === 0) return;
    this.slots = new Float64Array(2 * INITIAL_SLOTS).fill(EMPTY);
    this.mask = INITIAL_SLOTS - 1;
    this.shift = 32 - INITIAL_BITS;
    this.size = 0;
  }

  /** Fibonacci hashing: the top bits of the product, so block numbers in strides spread too. */
  private home(lbn: number): number {
    // (block numbers reach past 2^32 on disks over 16 TiB of 4 KiB blocks)
    const hi = (lbn / 4294967296) | 0;
    return Math.imul((lbn | 0) ^ Math.imul(hi, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
  }

  private grow(): void {
    const old = this.slots;
    this.slots = new Float64Array(2 * old.length).fill(EMPTY);
    this.mask = old.length - 1;
    this.shift--;
    this.size = 0;
    for (let i = 0; i < old.length; i += 2) if (old[i] !== EMPTY) this.set(old[i], old[i + 1]);
  }
}
