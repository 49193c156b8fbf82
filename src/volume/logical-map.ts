// The logical map: a radix tree from logical block number (LBN) to VBN, blockSize/8
// entries of u64 per node, `depth` levels (level 0 holds leaves). Entry 0 = unmapped.
// Nodes live in the VBN space and are copy-on-write: the first change to a node in a CP
// moves it to a freshly allocated VBN (its parent is changed the same way, up to the
// root), so the last CP's tree is never touched. A node already fresh in this CP is
// changed where it is. Dirty nodes may be written early to bound memory; they stay fresh.
import { CorruptError } from '../core/errors.js';

export interface MapStorage {
  /** The volume's file, named in errors. */
  readonly path?: string;
  readonly blockSize: number;
  readonly nblocks: number;
  readBlock(vbn: number, buf: Buffer): void;
  writeBlock(vbn: number, buf: Buffer): void;
  /** A new VBN, marked in the active plane. */
  allocate(): number;
  /** The VBN left the active tree. */
  release(vbn: number): void;
  /** True when vbn was allocated during this CP (so it may be changed in place). */
  isFresh(vbn: number): boolean;
}

/** Entry `slot` of a map node seen as 32-bit words: a u64 VBN, little-endian (words 2 slot and 2 slot + 1). */
export function mapEntry(words: Uint32Array, slot: number): number {
  return words[slot * 2] + words[slot * 2 + 1] * 4294967296;
}

interface MapNode {
  vbn: number;
  buf: Buffer;
  words: Uint32Array;
  dirty: boolean;
}

const DIRTY_LIMIT_BYTES = 64 << 20;
const CACHE_LIMIT_BYTES = 64 << 20;

/**
 * The cache key of the node at (level, index): levels are under 8 (a 4 KiB block's map
 * of 2^63 bytes is 5 deep). A number, where a `level:index` string cost an allocation on
 * every lookup (with the zero check, most of a served volume's garbage on writes).
 */
function nodeKey(level: number, index: number): number {
  return index * 8 + level;
}

function isLeafKey(key: number): boolean {
  return key % 8 === 0;
}

export class LogicalMap {
  readonly fanoutBits: number;
  private readonly fanoutMask: number;
  /**
   * Logical blocks under one node entry at each level (fanout ** level, level 0..depth),
   * computed once: `2 ** x` with x not a constant is a call to pow on every lookup (4% of a
   * re-import's time, measured with perf).
   */
  private readonly spans: number[];
  /** Cached nodes by nodeKey(level, index): a number, so a lookup allocates no string. */
  private readonly cache = new Map<number, MapNode>();
  private dirtyCount = 0;
  private readonly dirtyLimit: number;
  private readonly cacheLimit: number;
  private lastLeafKey = -1;
  private lastLeaf: MapNode | null = null;

  constructor(
    private readonly store: MapStorage,
    readonly depth: number,
    public root: number,
    private readonly readonly = false,
  ) {
    if (!(depth >= 1 && depth < 8)) throw new CorruptError(`${this.where}logical map depth ${depth} is not possible (1 to 7)`, this.checkHint);
    this.fanoutBits = Math.log2(store.blockSize / 8);
    this.fanoutMask = (1 << this.fanoutBits) - 1;
    this.spans = Array.from({ length: depth + 1 }, (_, level) => 2 ** (this.fanoutBits * level));
    this.dirtyLimit = Math.max(16, DIRTY_LIMIT_BYTES / store.blockSize);
    this.cacheLimit = Math.max(64, CACHE_LIMIT_BYTES / store.blockSize);
  }

  /** The volume named at the start of an error ("" when the storage has no path). */
  private get where(): string {
    return this.store.path ? `${this.store.path}: ` : '';
  }

  private get checkHint(): string {
    return `run: imgstream volume check ${this.store.path ?? 'VOLUME'}`;
  }

  private indexAt(lbn: number, level: number): number {
    return Math.floor(lbn / this.spans[level + 1]);
  }

  private slotAt(lbn: number, level: number): number {
    return Math.floor(lbn / this.spans[level]) & this.fanoutMask;
  }

  private load(vbn: number): MapNode {
    const buf = Buffer.alloc(this.store.blockSize);
    if (vbn !== 0) {
      if (vbn >= this.store.nblocks) throw new CorruptError(`${this.where}logical map points outside the volume (VBN ${vbn})`, this.checkHint);
      this.store.readBlock(vbn, buf);
    }
    return { vbn, buf, words: new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2), dirty: false };
  }

  private static entry(n: MapNode, slot: number): number {
    return mapEntry(n.words, slot);
  }

  private static setEntry(n: MapNode, slot: number, v: number): void {
    n.words[slot * 2] = v >>> 0;
    n.words[slot * 2 + 1] = Math.floor(v / 4294967296);
  }

  /** The node at (level, index) for reading, or null when its subtree is unmapped. */
  private node(level: number, index: number): MapNode | null {
    const key = nodeKey(level, index);
    const hit = this.cache.get(key);
    if (hit) return hit;
    let vbn: number;
    if (level === this.depth - 1) vbn = this.root;
    else {
      const parent = this.node(level + 1, Math.floor(index / this.spans[1]));
      if (!parent) return null;
      vbn = LogicalMap.entry(parent, index & this.fanoutMask);
    }
    if (vbn === 0) return null;
    const n = this.load(vbn);
    // a leaf's data VBNs are read as they are: one past the volume would read as zeros
    if (level === 0) this.checkLeaf(n);
    this.remember(key, n);
    return n;
  }

  private checkLeaf(n: MapNode): void {
    const nblocks = this.store.nblocks;
    for (let s = 0, fanout = 1 << this.fanoutBits; s < fanout; s++) {
      const v = LogicalMap.entry(n, s);
      if (v >= nblocks) throw new CorruptError(`${this.where}logical map node at VBN ${n.vbn} points outside the volume (${v})`, this.checkHint);
    }
  }

  private remember(key: number, n: MapNode): void {
    if (this.cache.size >= this.cacheLimit) this.trimCache();
    this.cache.set(key, n);
  }

  /** VBN of logical block lbn, 0 when unmapped. */
  lookup(lbn: number): number {
    const key = nodeKey(0, this.indexAt(lbn, 0));
    let leaf = key === this.lastLeafKey ? this.lastLeaf : null;
    if (!leaf) {
      leaf = this.node(0, this.indexAt(lbn, 0));
      if (!leaf) return 0;
      this.lastLeafKey = key;
      this.lastLeaf = leaf;
    }
    return LogicalMap.entry(leaf, this.slotAt(lbn, 0));
  }

  /** The node at (level, index), made changeable in this CP (copy-on-write). */
  private writable(level: number, index: number): MapNode {
    if (this.readonly) throw new Error('logical map is read-only');
    const key = nodeKey(level, index);
    let n = this.cache.get(key);
    let parent: MapNode | null = null;
    if (level < this.depth - 1) parent = this.writable(level + 1, Math.floor(index / this.spans[1]));
    if (!n) {
      const vbn = parent ? LogicalMap.entry(parent, index & this.fanoutMask) : this.root;
      n = this.load(vbn);
      this.remember(key, n);
    }
    if (n.vbn === 0 || !this.store.isFresh(n.vbn)) {
      const fresh = this.store.allocate();
      if (n.vbn !== 0) this.store.release(n.vbn);
      n.vbn = fresh;
      if (parent) LogicalMap.setEntry(parent, index & this.fanoutMask, fresh);
      else this.root = fresh;
    }
    if (!n.dirty) {
      n.dirty = true;
      this.dirtyCount++;
    }
    return n;
  }

  /** Maps lbn to vbn (0 unmaps) and returns the VBN it mapped before. */
  set(lbn: number, vbn: number): number {
    const leafIndex = this.indexAt(lbn, 0);
    const key = nodeKey(0, leafIndex);
    let leaf: MapNode;
    if (key === this.lastLeafKey && this.lastLeaf?.dirty && this.store.isFresh(this.lastLeaf.vbn)) leaf = this.lastLeaf;
    else {
      if (vbn === 0 && !this.node(0, leafIndex)) return 0; // unmapping in an unmapped subtree
      leaf = this.writable(0, leafIndex);
      this.lastLeafKey = key;
      this.lastLeaf = leaf;
    }
    const slot = this.slotAt(lbn, 0);
    const old = LogicalMap.entry(leaf, slot);
    LogicalMap.setEntry(leaf, slot, vbn);
    if (this.dirtyCount > this.dirtyLimit) this.writeDirty(true);
    return old;
  }

  /** Writes every dirty node (all already have fresh VBNs). Early writes keep upper levels cached. */
  writeDirty(early = false): void {
    for (const [key, n] of this.cache) {
      if (!n.dirty) continue;
      if (early && n === this.lastLeaf) continue;
      this.store.writeBlock(n.vbn, n.buf);
      n.dirty = false;
      this.dirtyCount--;
      if (early && isLeafKey(key)) this.cache.delete(key);
    }
  }

  /** Drops every cached node (after an aborted CP the cached tree is not the committed one). */
  forget(root: number): void {
    this.cache.clear();
    this.dirtyCount = 0;
    this.lastLeaf = null;
    this.lastLeafKey = -1;
    this.root = root;
  }

  private trimCache(): void {
    let n = this.cache.size >>> 1;
    for (const [key, node] of this.cache) {
      if (node.dirty || node === this.lastLeaf || !isLeafKey(key)) continue;
      this.cache.delete(key);
      if (--n <= 0) break;
    }
  }

  /** Calls cb(lbn, vbn) for every mapped logical block in [from, to), reading map nodes only. */
  walkRange(from: number, to: number, cb: (lbn: number, vbn: number) => void): void {
    const fanout = 1 << this.fanoutBits;
    const visit = (level: number, index: number): void => {
      const n = this.node(level, index);
      if (!n) return;
      const span = this.spans[level];
      const first = index * fanout * span;
      for (let s = 0; s < fanout; s++) {
        const lo = first + s * span;
        if (lo + span <= from) continue;
        if (lo >= to) break;
        const child = LogicalMap.entry(n, s);
        if (child === 0) continue;
        if (level === 0) cb(lo, child);
        else visit(level - 1, index * fanout + s);
      }
    };
    visit(this.depth - 1, 0);
  }

  /**
   * Visits every node and mapped data block of the tree: onNode(vbn, level) for each map
   * node, onData(lbn, vbn) for each mapped logical block. Reads map nodes only.
   */
  walk(onNode: (vbn: number, level: number) => void, onData: (lbn: number, vbn: number) => void): void {
    const fanout = 1 << this.fanoutBits;
    const visit = (vbn: number, level: number, firstLbn: number): void => {
      onNode(vbn, level);
      const n = this.load(vbn);
      const span = this.spans[level];
      for (let s = 0; s < fanout; s++) {
        const child = LogicalMap.entry(n, s);
        if (child === 0) continue;
        if (child >= this.store.nblocks) throw new CorruptError(`${this.where}logical map node at VBN ${vbn} points outside the volume (${child})`, this.checkHint);
        if (level === 0) onData(firstLbn + s, child);
        else visit(child, level - 1, firstLbn + s * span);
      }
    };
    if (this.root !== 0) visit(this.root, this.depth - 1, 0);
  }
}

/** True when `map` maps no block of [from, to): the disk reads as zeros there. Reads map nodes only, skipping unmapped subtrees. */
export function noneMapped(map: LogicalMap, from: number, to: number): boolean {
  let any = false;
  map.walkRange(from, to, () => (any = true));
  return !any;
}

/** Calls cb(lbn, vbn) for every mapped logical block in [from, to), skipping unmapped subtrees. */
export function forEachMapped(map: LogicalMap, from: number, to: number, cb: (lbn: number, vbn: number) => void): void {
  map.walkRange(from, to, cb);
}
