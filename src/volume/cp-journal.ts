// A consistency point (Volume.commit()):
//   1. data blocks were already written to free VBNs; dirty map nodes are written now
//   2. the changed plane and table blocks are written to free VBNs (the journal), with an
//      index (format/journal-index.ts); fdatasync
//   3. the root record naming the new map root and the journal; fdatasync
//   4. the journal is applied in place; fdatasync
//   5. a root record without journal (generation + 1); fdatasync: journal blocks are free
// A crash before 3 leaves the previous root current, and nothing it references was
// touched; after 3 the journal is replayed on open (a mirror transfer's journal also
// carries data blocks it replaces atomically). Cost: what changed, not volume size. The
// root record's two slots alternate by generation, so a torn root write leaves the other.
import { CorruptError } from '../core/errors.js';
import { encodeRootRecord, type RootRecord } from '../format/volume-root.js';
import { contentCrc, decodeJournalIndex, encodeJournalIndex, entriesPerIndexBlock, type JournalEntry } from '../format/journal-index.js';
import { crc32 } from '../format/crc32.js';
import type { BlockFile } from './block-file.js';
import type { VolumeLayout } from './layout.js';
import type { MetadataStore } from './metadata-store.js';
import { crashPoint } from './crash-point.js';

/**
 * Steps 2-5 of a CP: `take` reserves journal blocks, `state` is the current root record
 * with the new map root and allocation cursor (asked after the journal took its blocks),
 * `writeRoot` writes a root record and makes it current. Returns the committed one.
 */
export function writeConsistencyPoint(file: BlockFile, layout: VolumeLayout, meta: MetadataStore, state: () => RootRecord, take: () => number, writeRoot: (r: RootRecord) => void): RootRecord {
  const journal = writeJournal(file, layout, meta, take);
  crashPoint('journal', file.path);
  const next = state();
  const committed: RootRecord = { ...next, generation: next.generation + 1, cpTimeMs: Date.now(), journalHead: journal.head, journalCount: journal.count, journalCrc: journal.crc };
  writeRoot(committed);
  crashPoint('root', file.path);
  applyJournal(file, layout, meta.dirtyBlocks().map(([m, blk]) => [m, blk.buf]));
  crashPoint('apply', file.path);
  const clean = { ...committed, generation: committed.generation + 1, journalHead: 0, journalCount: 0, journalCrc: 0 };
  writeRoot(clean);
  crashPoint('clean-root', file.path);
  return clean;
}

/** Where a written journal is, as the root record names it. */
export interface JournalRef {
  head: number;
  count: number;
  crc: number;
}

/**
 * Writes the store's dirty blocks and their index to VBNs from `take` (which must
 * reserve each one: no plane records them), then syncs. Taking a block from a shadow
 * snapshot clears its bit, which can dirty one more plane block: blocks are taken until
 * they cover every dirty block plus the index.
 */
export function writeJournal(file: BlockFile, layout: VolumeLayout, meta: MetadataStore, take: () => number): JournalRef {
  const bs = layout.blockSize;
  const per = entriesPerIndexBlock(bs);
  const needed = () => meta.dirtyCount() + Math.ceil(meta.dirtyCount() / per);
  const vbns: number[] = [];
  while (vbns.length < needed()) vbns.push(take());
  const dirty = meta.dirtyBlocks();
  const contentVbns = vbns.slice(0, dirty.length);
  const indexVbns = vbns.slice(dirty.length, dirty.length + Math.ceil(dirty.length / per));
  const entries: JournalEntry[] = [];
  dirty.forEach(([m, blk], i) => {
    file.write(blk.buf, layout.vbnOffset(contentVbns[i]));
    entries.push({ target: m, vbn: contentVbns[i], crc: contentCrc(blk.buf) });
  });
  const groups: JournalEntry[][] = [];
  for (let i = 0; i < entries.length; i += per) groups.push(entries.slice(i, i + per));
  const indexBlocks = groups.map((g, i) => encodeJournalIndex(bs, g, indexVbns[i + 1] ?? 0));
  indexBlocks.forEach((b, i) => file.write(b, layout.vbnOffset(indexVbns[i])));
  file.sync();
  return { head: indexVbns[0] ?? 0, count: entries.length, crc: crc32(Buffer.concat(indexBlocks)) };
}

/** A journal read back: the new contents by target block, and the VBNs it occupies. */
export interface ReadJournal {
  blocks: Map<number, Buffer>;
  vbns: number[];
}

/** Reads and verifies the journal `root` names (null when it names none). */
export function readJournal(file: BlockFile, layout: VolumeLayout, path: string, root: RootRecord): ReadJournal | null {
  if (root.journalHead === 0) return null;
  const bs = layout.blockSize;
  const blocks = new Map<number, Buffer>();
  const indexCrcs: Buffer[] = [];
  const vbns: number[] = [];
  let next = root.journalHead;
  let count = 0;
  while (next !== 0) {
    if (next >= layout.nblocks) throw new CorruptError(`${path}: journal points outside the volume`);
    const idx = Buffer.alloc(bs);
    file.read(idx, layout.vbnOffset(next));
    vbns.push(next);
    indexCrcs.push(idx);
    const dec = decodeJournalIndex(idx);
    if (!dec) throw new CorruptError(`${path}: journal index block at VBN ${next} is damaged`);
    for (const e of dec.entries) {
      const content = Buffer.alloc(bs);
      file.read(content, layout.vbnOffset(e.vbn));
      if (contentCrc(content) !== e.crc) throw new CorruptError(`${path}: journal block at VBN ${e.vbn} is damaged`);
      // metadata blocks, or (mirror transfers) data blocks replaced atomically with the CP
      if (e.target < 2 || e.target >= layout.fileBlocks) throw new CorruptError(`${path}: journal targets block ${e.target} outside the volume`);
      blocks.set(e.target, content);
      vbns.push(e.vbn);
      count++;
    }
    next = dec.next;
  }
  if (count !== root.journalCount || crc32(Buffer.concat(indexCrcs)) !== root.journalCrc) {
    throw new CorruptError(`${path}: journal does not match its root record`);
  }
  return { blocks, vbns };
}

/** Writes journaled contents to their places (idempotent: a crash during it is replayed on open), then syncs. */
export function applyJournal(file: BlockFile, layout: VolumeLayout, blocks: Iterable<[number, Uint8Array]>): void {
  for (const [m, b] of blocks) file.write(b, layout.metaOffset(m));
  file.sync();
}

/** Writes a root record to the slot its generation selects, then syncs. */
export function writeRootRecord(file: BlockFile, layout: VolumeLayout, r: RootRecord): void {
  const b = Buffer.alloc(layout.blockSize);
  encodeRootRecord(r).copy(b);
  file.write(b, layout.metaOffset(r.generation % 2));
  file.sync();
}
