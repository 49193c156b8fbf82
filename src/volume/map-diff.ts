// The logical blocks whose mapping differs between two trees of a volume's logical map
// (two states: a snapshot and the state a restore installs over it). The trees share every
// node nothing changed under (copy-on-write), so the walk goes down only where the two
// point at different nodes: its cost follows the change, not the disk. A block mapped in
// one tree and unmapped in the other differs; one unmapped in both does not.
import { CorruptError } from '../core/errors.js';
import { mapEntry } from './logical-map.js';

export interface MapTrees {
  /** Names the volume in errors. */
  readonly path: string;
  readonly blockSize: number;
  readonly nblocks: number;
  /** Reads the map node at `vbn` (as the newer tree has it: a node still to be written where it belongs included). */
  readNode(vbn: number, buf: Buffer): void;
}

/** Calls `changed(lbn)` in ascending order for each logical block mapped differently by the trees at rootA and rootB (`depth` levels). */
export function forEachChangedLbn(trees: MapTrees, depth: number, rootA: number, rootB: number, changed: (lbn: number) => void): void {
  const fanout = trees.blockSize / 8;
  const spans = Array.from({ length: depth }, (_, level) => fanout ** level);
  const load = (vbn: number): Uint32Array | null => {
    if (vbn === 0) return null;
    if (!(vbn > 0 && vbn < trees.nblocks)) throw new CorruptError(`${trees.path}: logical map points outside the volume (VBN ${vbn})`, `run: imgstream volume check ${trees.path}`);
    const buf = Buffer.alloc(trees.blockSize);
    trees.readNode(vbn, buf);
    return new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
  };
  // every block mapped under one side's node, the other side having nothing there
  const all = (node: Uint32Array, level: number, first: number): void => {
    for (let s = 0; s < fanout; s++) {
      const child = mapEntry(node, s);
      if (child === 0) continue;
      if (level === 0) changed(first + s);
      else all(load(child)!, level - 1, first + s * spans[level]);
    }
  };
  const visit = (a: number, b: number, level: number, first: number): void => {
    if (a === b) return;
    const na = load(a);
    const nb = load(b);
    if (na === null || nb === null) {
      all((na ?? nb)!, level, first);
      return;
    }
    for (let s = 0; s < fanout; s++) {
      const ca = mapEntry(na, s);
      const cb = mapEntry(nb, s);
      if (ca === cb) continue;
      if (level === 0) changed(first + s);
      else visit(ca, cb, level - 1, first + s * spans[level]);
    }
  };
  visit(rootA, rootB, depth - 1, 0);
}
