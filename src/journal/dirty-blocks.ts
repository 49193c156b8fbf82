// `dirty.bits`: the blocks of a journal's dirty set (the blocks changed since the last
// record a destination acknowledged, once records were dropped or never made; `dirty.json`
// holds the rest, journal-files.ts), as a bitmap file: a header page, then page p of the
// set (core/block-set.ts) at byte (p + 1) * PAGE_BYTES, holes where no block is set. A
// bit per block of the disk at most, so a 1 TiB disk of 4 KiB blocks needs 32 MiB however
// much was written, where a list of numbers grew with every block and was rewritten whole.
//
// Updated in place: between its creation and its removal a dirty set only grows (blocks
// are added; a resync point or a new overflow keeps what it held), so a page cut short by
// a crash holds old bits or new ones, never fewer than before, and the writer writes the
// pages it changed and syncs them before the CP that commits those changes. dirty.json is
// written after the bits: a crash between the two leaves bits that hold more, never less.
// A new set (no dirty.json) begins with the file written whole.
import fs from 'node:fs';
import path from 'node:path';
import { BlockSet, PAGE_BYTES } from '../core/block-set.js';
import { fromSystemError } from '../core/errors.js';
import { fsyncDirectory } from '../fs/durable-file.js';
import { crc32 } from '../format/crc32.js';
import { crashPoint } from '../volume/crash-point.js';
import { DIRTY_BITS, readShipped, renamesInOrder, writeDirty, type DirtyRename, type DirtySet } from './journal-files.js';
import { changesAfter } from './journal-reader.js';

const MAGIC = Buffer.from('IMGDIRTY', 'latin1');
const VERSION = 1;
/** Pages read at once when the file is loaded. */
const READ_PAGES = 256;

function header(): Buffer {
  const h = Buffer.alloc(PAGE_BYTES);
  MAGIC.copy(h, 0);
  h.writeUInt32LE(VERSION, 8);
  h.writeUInt32LE(PAGE_BYTES, 12);
  h.writeUInt32LE(crc32(h.subarray(0, 16)), 16);
  return h;
}

function headerOk(h: Buffer): boolean {
  return h.subarray(0, 8).equals(MAGIC) && h.readUInt32LE(8) === VERSION && h.readUInt32LE(12) === PAGE_BYTES && h.readUInt32LE(16) === crc32(h.subarray(0, 16));
}

/**
 * Saves `blocks` to the journal directory `dir`: written whole when `whole` (a new set),
 * else only the pages changed since the last save; synced before it returns.
 */
export function saveDirtyBlocks(dir: string, blocks: BlockSet, whole: boolean): void {
  const file = path.join(dir, DIRTY_BITS);
  let fd: number;
  try {
    fd = fs.openSync(file, whole ? 'w' : 'r+', 0o644);
  } catch (err) {
    if (!whole && (err as NodeJS.ErrnoException).code === 'ENOENT') return saveDirtyBlocks(dir, blocks, true);
    throw fromSystemError(err, file, 'writing the journal\'s changed blocks');
  }
  try {
    const pages = blocks.takeTouched();
    if (whole) fs.writeSync(fd, header(), 0, PAGE_BYTES, 0);
    for (const p of whole ? blocks.pageNumbers() : pages) {
      const bits = blocks.pageBits(p);
      if (bits) fs.writeSync(fd, bits, 0, PAGE_BYTES, (p + 1) * PAGE_BYTES);
    }
    fs.fdatasyncSync(fd);
  } catch (err) {
    throw fromSystemError(err, file, 'writing the journal\'s changed blocks');
  } finally {
    fs.closeSync(fd);
  }
  if (whole) fsyncDirectory(dir);
}

/**
 * The dirty set's blocks: from `lbns` when dirty.json lists them (as versions before
 * dirty.bits did), else from dirty.bits. Null when they cannot be known: the file is
 * missing or its header damaged, or it holds fewer than the `blocks` dirty.json counted.
 */
export function loadDirtyBlocks(dir: string, meta: { lbns?: number[]; blocks?: number }): BlockSet | null {
  if (Array.isArray(meta.lbns)) return BlockSet.of(meta.lbns);
  const file = path.join(dir, DIRTY_BITS);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, file, 'reading the journal\'s changed blocks');
  }
  const set = new BlockSet();
  try {
    const h = Buffer.alloc(PAGE_BYTES);
    if (fs.readSync(fd, h, 0, PAGE_BYTES, 0) !== PAGE_BYTES || !headerOk(h)) return null;
    const buf = Buffer.alloc(READ_PAGES * PAGE_BYTES);
    for (let first = 0; ; first += READ_PAGES) {
      const got = fs.readSync(fd, buf, 0, buf.length, (first + 1) * PAGE_BYTES);
      for (let k = 0; (k + 1) * PAGE_BYTES <= got; k++) set.loadPage(first + k, buf.subarray(k * PAGE_BYTES, (k + 1) * PAGE_BYTES));
      if (got < buf.length) break;
    }
  } catch (err) {
    throw fromSystemError(err, file, 'reading the journal\'s changed blocks');
  } finally {
    fs.closeSync(fd);
  }
  set.takeTouched();
  return set.size >= (meta.blocks ?? 0) ? set : null;
}

/** A journal writer's dirty set in memory: `whole` until its blocks were saved once. */
export interface Dirty {
  after: number;
  blocks: BlockSet;
  snapshots: string[];
  renames: DirtyRename[];
  reason?: string;
  whole: boolean;
}

/** Saves dirty set `d` of journal `dir` as of record `upTo`: its blocks first (synced), then dirty.json. */
export function saveDirtySet(dir: string, d: Dirty, upTo: number): DirtySet {
  saveDirtyBlocks(dir, d.blocks, d.whole);
  crashPoint('dirty-bits', dir);
  d.whole = false;
  const meta: DirtySet = { after: d.after, upTo, blocks: d.blocks.size, snapshots: d.snapshots, renames: d.renames, ...(d.reason ? { reason: d.reason } : {}) };
  writeDirty(dir, meta);
  return meta;
}

/**
 * The blocks of journal `dir`'s saved dirty set `prev` (empty when none), and whether its
 * file must be written whole. Blocks that cannot be known (dirty.bits missing or damaged)
 * are taken to be all `logicalBlocks` of the disk, said through `report`: the resync then
 * sends every block, never too few.
 */
export function savedDirtyBlocks(dir: string, prev: DirtySet | null, logicalBlocks: number, report: (m: string) => void): { blocks: BlockSet; whole: boolean } {
  if (prev === null) return { blocks: new BlockSet(), whole: true };
  const blocks = loadDirtyBlocks(dir, prev);
  if (blocks !== null) return { blocks, whole: Array.isArray(prev.lbns) };
  report(`journal ${dir}: its list of changed blocks (${DIRTY_BITS}) is missing or damaged: every block of the disk is taken as changed, and the next protect transfer resyncs them all`);
  const all = new BlockSet();
  all.addRange(0, logicalBlocks);
  return { blocks: all, whole: true };
}

/**
 * The dirty set of an overflowed journal `dir` reopened after a crash, from its saved copy
 * `saved`. None saved: it was killed between its overflow record and the save, and the
 * records the overflow drops are all still in the journal (segments go only after the
 * save), so the set is their blocks, from the destination's last record on.
 */
export function recoveredDirty(dir: string, saved: DirtySet | null, logicalBlocks: number, report: (m: string) => void): Dirty {
  const { blocks, whole } = savedDirtyBlocks(dir, saved, logicalBlocks, report);
  if (saved !== null) return { after: saved.after, blocks, snapshots: [...(saved.snapshots ?? [])], renames: [...(saved.renames ?? [])], ...(saved.reason ? { reason: saved.reason } : {}), whole };
  const shipped = readShipped(dir)?.journalTo ?? 0;
  const since = changesAfter(dir, shipped);
  blocks.addAll(since.blocks);
  return { after: shipped, blocks, snapshots: since.snapshots, renames: renamesInOrder(since.renames), whole };
}
