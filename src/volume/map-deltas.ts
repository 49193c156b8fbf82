// Map blocks as differences from a base tree (the MAPDELTA records of image streams and
// mirror transfers, format/image-stream.ts): after a small random change nearly every map
// leaf differs from its older copy by a few entries, so sending the entries that changed
// costs a fraction of sending the leaves.
import { CorruptError } from '../core/errors.js';
import type { MapDelta } from '../format/image-stream.js';
import { mapEntry } from './logical-map.js';
import { SparseBitmap } from './sparse-bitmap.js';
import type { Volume } from './volume.js';

/** The blocks a transfer carries. */
export interface CarriedBlocks {
  has(vbn: number): boolean;
}

/**
 * Checks every map node of the trees at `roots` that `carried` holds (a level 0 carries
 * them all): each entry within the volume, or CorruptError naming the node. Reads map
 * nodes only, each once.
 */
export function checkCarriedMaps(vol: Volume, roots: number[], carried: CarriedBlocks): void {
  collectMapDeltas(vol, roots, 0, carried, true);
}

/**
 * The carried map nodes of the trees at `roots`, each as its differences from the node at
 * the same place in the tree at `baseRoot` (which the receiver holds). A node that is not
 * carried is at the receiver already, with its whole subtree (copy-on-write), so the walk
 * only goes down through carried nodes: its cost is what changed. A node that differs from
 * its base in more than half its entries, or has no base, is left out: it travels whole.
 * `check` (a dump, whose trees are all consistent images): each node walked is checked, an
 * entry past the volume is CorruptError. Without it (a mirror, whose trees include shadow
 * snapshots whose blocks were reused, no longer map nodes) such an entry is passed over.
 * `baseRoot` 0: no base (every carried node travels whole).
 */
export function collectMapDeltas(vol: Volume, roots: number[], baseRoot: number, carried: CarriedBlocks, check = false): MapDelta[] {
  const bs = vol.blockSize;
  const entries = bs / 8;
  const seen = new SparseBitmap(vol.layout.wordsPerPlaneBlock);
  const out: MapDelta[] = [];
  const node = Buffer.alloc(bs);
  const base = Buffer.alloc(bs);
  // 32-bit views of the two blocks (Buffer.alloc of a block is never pooled, so aligned)
  const nodeWords = new Uint32Array(node.buffer, node.byteOffset, bs / 4);
  const baseWords = new Uint32Array(base.buffer, base.byteOffset, bs / 4);
  const read = (vbn: number, into: Buffer) => {
    if (vbn === 0) into.fill(0);
    else vol.readBlock(vbn, into);
  };
  const walk = (vbn: number, baseVbn: number, level: number) => {
    if (vbn === 0 || (!check && vbn >= vol.nblocks) || seen.has(vbn) || !carried.has(vbn)) return;
    seen.add(vbn);
    read(vbn, node);
    read(baseVbn, base);
    // a node pointing past the volume is damage the receiver would copy as it is, and then
    // fail to read: the transfer fails here instead, naming it (the walk reads each node anyway)
    for (let i = 0; check && i < entries; i++) {
      const v = mapEntry(nodeWords, i);
      if (v >= vol.nblocks) throw new CorruptError(`${vol.path}: logical map node at VBN ${vbn} points outside the volume (${v})`, `run: imgstream volume check ${vol.path}`);
    }
    // a node without a base travels whole: no differences to find (a level 0's check walks only such nodes)
    if (baseVbn !== 0) {
      const slots: number[] = [];
      const values: number[] = [];
      for (let i = 0; i < entries; i++) {
        if (nodeWords[2 * i] !== baseWords[2 * i] || nodeWords[2 * i + 1] !== baseWords[2 * i + 1]) {
          slots.push(i);
          values.push(mapEntry(nodeWords, i));
        }
      }
      if (slots.length <= entries / 2) out.push({ vbn, base: baseVbn, slots, values });
    }
    if (level === 0) return;
    // the children, read before the recursion reuses the two buffers
    const children: number[] = [];
    for (let i = 0; i < entries; i++) {
      const v = mapEntry(nodeWords, i);
      if (v !== 0) children.push(v, mapEntry(baseWords, i));
    }
    for (let k = 0; k < children.length; k += 2) walk(children[k], children[k + 1], level - 1);
  };
  for (const root of roots) walk(root, baseRoot, vol.rootRecord.mapDepth - 1);
  return out;
}
