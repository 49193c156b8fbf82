// Plane and snapshot-table blocks, read through three layers: blocks changed since the
// last CP (dirty, journaled at the next CP), the journal of the current root when it was
// not applied in place yet (read-only opens after a crash), and a bounded cache of clean
// blocks read from the file.
//
// Blocks of zeros (most plane blocks of a large, mostly empty volume) are one shared,
// read-only block, and the store remembers which blocks of the file it found zero (a bit
// each): a later pass over them neither reads nor allocates. A mirror update of a 4 TiB
// volume holding 4 MiB made a dozen passes over 256 MiB planes, allocating a buffer per
// block each time.
import type { BlockFile } from './block-file.js';
import type { VolumeLayout } from './layout.js';

export interface MetaBlock {
  buf: Buffer;
  words: Uint32Array;
}

const CLEAN_CACHE_BYTES = 64 << 20;
/** Blocks read at once on a miss. */
const READ_AHEAD = 16;

export class MetadataStore {
  private readonly dirty = new Map<number, MetaBlock>();
  private readonly clean = new Map<number, MetaBlock>();
  private readonly overlay = new Map<number, Buffer>();
  private readonly cleanLimit: number;
  private scratch: Buffer | null = null;
  /** The block of zeros every zero block read is (never written: forWrite() copies it). */
  private readonly zero: MetaBlock;
  /** Bit m: the file holds zeros at metadata block m, and no other layer holds it. */
  private readonly knownZero: Uint8Array;

  /** `cacheBytes`: what the cache of clean blocks holds at most (at least 64 blocks). */
  constructor(private readonly file: BlockFile, private readonly layout: VolumeLayout, cacheBytes = CLEAN_CACHE_BYTES) {
    this.cleanLimit = Math.max(64, Math.floor(cacheBytes / layout.blockSize));
    this.zero = this.wrap(Buffer.alloc(layout.blockSize));
    this.knownZero = new Uint8Array(Math.ceil(layout.dataStart / 8));
  }

  private wrap(buf: Buffer): MetaBlock {
    return { buf, words: new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2) };
  }

  /** Whether `words` are the shared block of zeros (a quick test that skips most of a sparse plane; false does not mean non-zero). */
  isZero(words: Uint32Array): boolean {
    return words === this.zero.words;
  }

  /** The shared block of zeros' words. */
  get zeroWords(): Uint32Array {
    return this.zero.words;
  }

  /** Whether the file holds zeros at block m and no other layer holds it (found so by an earlier read). */
  isKnownZero(m: number): boolean {
    return (this.knownZero[m >>> 3] & (1 << (m & 7))) !== 0;
  }

  /** Notes that the file holds zeros at block m (as read just now); ignored when another layer holds it. */
  noteZero(m: number): void {
    if (this.dirty.has(m) || this.overlay.has(m)) return;
    this.knownZero[m >>> 3] |= 1 << (m & 7);
  }

  private notZero(m: number): void {
    this.knownZero[m >>> 3] &= ~(1 << (m & 7));
  }

  /** A block for reading. Do not modify it: use forWrite(). */
  read(m: number): MetaBlock {
    const d = this.dirty.get(m);
    if (d) return d;
    const c = this.clean.get(m);
    if (c) return c;
    if (this.isKnownZero(m)) return this.zero;
    // a miss: it and the blocks after it that no layer holds, in one read (a plane scan
    // goes block after block: a 1 TiB disk's planes are 32768 blocks each), each block
    // kept in a buffer of its own, but zeros (the shared block, not cached)
    const bs = this.layout.blockSize;
    const limit = Math.min(READ_AHEAD, this.layout.dataStart - m);
    let n = 1;
    while (n < limit && !this.dirty.has(m + n) && !this.clean.has(m + n) && !this.isKnownZero(m + n)) n++;
    const run = (this.scratch ??= Buffer.allocUnsafe(READ_AHEAD * bs)).subarray(0, n * bs);
    this.file.read(run, this.layout.metaOffset(m));
    let first: MetaBlock | null = null;
    for (let i = 0; i < n; i++) {
      const o = this.overlay.get(m + i);
      let b: MetaBlock;
      if (!o && run.subarray(i * bs, (i + 1) * bs).equals(this.zero.buf)) {
        this.noteZero(m + i);
        b = this.zero;
      } else {
        const buf = Buffer.allocUnsafe(bs);
        if (o) o.copy(buf);
        else run.copy(buf, 0, i * bs, (i + 1) * bs);
        b = this.wrap(buf);
        if (this.clean.size >= this.cleanLimit) this.evict();
        this.clean.set(m + i, b);
      }
      first ??= b;
    }
    return first!;
  }

  /** The block, moved to the dirty set: its new contents go into the next CP. */
  forWrite(m: number): MetaBlock {
    const d = this.dirty.get(m);
    if (d) return d;
    let b = this.read(m);
    if (b === this.zero) b = this.wrap(Buffer.alloc(this.layout.blockSize));
    this.clean.delete(m);
    this.notZero(m);
    this.dirty.set(m, b);
    return b;
  }

  /** Overwrites a block outright (its old contents are not needed). */
  replace(m: number, buf: Buffer): void {
    this.clean.delete(m);
    this.notZero(m);
    this.dirty.set(m, this.wrap(buf));
  }

  /**
   * The block when it differs from what the file holds (changed since the last CP, or in
   * a journal not applied yet); undefined when the file's copy is current.
   */
  override(m: number): Uint32Array | undefined {
    const d = this.dirty.get(m);
    if (d) return d.words;
    if (this.overlay.size === 0) return undefined;
    return this.overlay.has(m) ? this.read(m).words : undefined;
  }

  isDirty(m: number): boolean {
    return this.dirty.has(m);
  }

  dirtyBlocks(): Array<[number, MetaBlock]> {
    return [...this.dirty.entries()].sort((a, b) => a[0] - b[0]);
  }

  dirtyCount(): number {
    return this.dirty.size;
  }

  /** After a CP: dirty blocks are now what the file holds. */
  markClean(): void {
    for (const [m, b] of this.dirty) {
      if (this.clean.size >= this.cleanLimit) this.evict();
      this.clean.set(m, b);
      this.notZero(m);
    }
    this.dirty.clear();
  }

  /** Drops uncommitted changes (an aborted operation). */
  discardDirty(): void {
    this.dirty.clear();
  }

  /** Forgets cached copies of file blocks [start, start+count), e.g. a freed plane slot. */
  forget(start: number, count: number): void {
    for (const map of [this.dirty, this.clean]) {
      for (const m of [...map.keys()]) if (m >= start && m < start + count) map.delete(m);
    }
    for (let m = start; m < start + count; m++) this.notZero(m);
  }

  setOverlay(entries: Map<number, Buffer>): void {
    this.overlay.clear();
    for (const [m, b] of entries) this.overlay.set(m, b);
    this.clean.clear();
    this.knownZero.fill(0);
  }

  clearOverlay(): void {
    this.overlay.clear();
  }

  private evict(): void {
    let n = this.clean.size >>> 1;
    for (const k of this.clean.keys()) {
      this.clean.delete(k);
      if (--n <= 0) break;
    }
  }
}
