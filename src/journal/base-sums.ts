// Checksums of the data of a protection destination's base: DEST/base.sums holds the
// crc32 of every logical block of the base volume's active file system (a block that
// reads as zeros: the crc32 of a zero block), so that bit rot in the base is found by a
// restore or export that reads it, and by a scrub (protect status --verify), as it is in
// the intervals. Written whole at the seed (next to the base, before the base takes its
// name), then, at each fold step, the entries of the LBNs the interval wrote, from the
// interval's own index (its checksums are the data's), fsynced before the step's progress
// is recorded: a step redone after a crash writes them again. Between a step's CP and
// its entries, a crash leaves entries older than the base for LBNs of that interval;
// every recovery point still in the window takes those LBNs from the interval, not from
// the base, so nothing checks them until the step is redone. Snapshots folded into the
// base are not covered (their blocks are older versions).
//
//   0  u32  magic "IBS2" (or "IBS1", written by earlier versions)
//   4  u32  block size
//   8  f64  logical blocks
//  16  u32  CRC-32 of bytes 0..16
//  20  12   reserved (0)
//  32  u32  per LBN, little-endian: in "IBS2" files the crc32 XOR a zero block's crc32,
//           so a block of zeros is 0 and runs of them are holes (a 1 TiB disk holding
//           little takes next to no space, where "IBS1" took 1 GiB); in "IBS1", the crc32
// A destination seeded by an imgstream without base checksums has no such file: its base
// is then checked for structure only, as before.
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, fromSystemError } from '../core/errors.js';
import { crc32 } from '../format/crc32.js';
import { entryBlocks, type IntervalIndex } from './interval-file.js';

export const BASE_SUMS_FILE = 'base.sums';
const MAGIC_DENSE = 0x3153_4249; // "IBS1" read little-endian
const MAGIC = 0x3253_4249; // "IBS2"
const HEADER_BYTES = 32;
/** Entries read or rewritten at once. */
const CHUNK_ENTRIES = 16384;

const zeroCrcs = new Map<number, number>();
/** The crc32 of a block of zeros of `blockSize` bytes. */
export function zeroBlockCrc(blockSize: number): number {
  let c = zeroCrcs.get(blockSize);
  if (c === undefined) zeroCrcs.set(blockSize, (c = crc32(Buffer.alloc(blockSize))));
  return c;
}

function header(blockSize: number, logicalBlocks: number): Buffer {
  const h = Buffer.alloc(HEADER_BYTES);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt32LE(blockSize, 4);
  h.writeDoubleLE(logicalBlocks, 8);
  h.writeUInt32LE(crc32(h.subarray(0, 16)), 16);
  return h;
}

/**
 * Writes a new sums file sequentially, entry after entry in LBN order (a seed's blocks
 * come so): LBNs skipped read as zeros. `finish()` fsyncs it; the caller renames it.
 */
export class BaseSumsWriter {
  private readonly fd: number;
  private readonly chunk = Buffer.allocUnsafe(CHUNK_ENTRIES * 4);
  /** The chunk's entries (little-endian words, as read(): the platforms node runs imgstream on are little-endian). */
  private readonly entries = new Uint32Array(this.chunk.buffer, this.chunk.byteOffset, CHUNK_ENTRIES);
  private filled = 0;
  private next = 0;
  private at = HEADER_BYTES;
  private readonly zero: number;
  private closed = false;
  private static readonly HOLE = Buffer.alloc(CHUNK_ENTRIES * 4);

  constructor(readonly file: string, blockSize: number, private readonly logicalBlocks: number) {
    this.zero = zeroBlockCrc(blockSize);
    try {
      this.fd = fs.openSync(file, 'w');
      fs.writeSync(this.fd, header(blockSize, logicalBlocks), 0, HEADER_BYTES, 0);
    } catch (err) {
      throw fromSystemError(err, file, 'writing the base checksums');
    }
  }

  /** The checksum of `lbn` (past every LBN given so far); null data: a zero block. */
  add(lbn: number, data: Buffer | null): void {
    this.zerosTo(lbn);
    this.put(data === null ? 0 : (crc32(data) ^ this.zero) >>> 0);
  }

  /** Zero blocks' entries (0) up to `lbn`, a run at a time: a large sparse disk is mostly such runs, left as holes. */
  private zerosTo(lbn: number): void {
    while (this.next < lbn) {
      const n = Math.min(lbn - this.next, CHUNK_ENTRIES - this.filled);
      this.entries.fill(0, this.filled, this.filled + n);
      this.filled += n;
      this.next += n;
      if (this.filled === CHUNK_ENTRIES) this.flush();
    }
  }

  private put(c: number): void {
    this.entries[this.filled] = c;
    this.filled++;
    this.next++;
    if (this.filled === CHUNK_ENTRIES) this.flush();
  }

  private flush(): void {
    const bytes = this.filled * 4;
    try {
      // a chunk of zero blocks only is a hole
      if (!this.chunk.subarray(0, bytes).equals(BaseSumsWriter.HOLE.subarray(0, bytes))) fs.writeSync(this.fd, this.chunk, 0, bytes, this.at);
    } catch (err) {
      throw fromSystemError(err, this.file, 'writing the base checksums');
    }
    this.at += this.filled * 4;
    this.filled = 0;
  }

  finish(): void {
    this.zerosTo(this.logicalBlocks);
    this.flush();
    try {
      fs.ftruncateSync(this.fd, HEADER_BYTES + this.logicalBlocks * 4); // the holes at its end
      fs.fsyncSync(this.fd);
    } catch (err) {
      throw fromSystemError(err, this.file, 'writing the base checksums');
    }
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    fs.closeSync(this.fd);
  }
}

/** The base checksums of destination `dir`, opened to read them (and, `write`, to update them); null when it keeps none. */
export class BaseSums {
  private constructor(
    readonly file: string,
    private readonly fd: number,
    readonly blockSize: number,
    readonly logicalBlocks: number,
    /** What an entry in the file is XORed with ("IBS2": a zero block's crc32; "IBS1": 0). */
    private readonly xor: number,
  ) {}

  static open(dir: string, opts: { write: boolean; blockSize: number; logicalBlocks: number }): BaseSums | null {
    const file = path.join(dir, BASE_SUMS_FILE);
    let fd: number;
    try {
      fd = fs.openSync(file, opts.write ? 'r+' : 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw fromSystemError(err, file, 'opening the base checksums');
    }
    try {
      const h = Buffer.alloc(HEADER_BYTES);
      const got = fs.readSync(fd, h, 0, HEADER_BYTES, 0);
      const size = fs.fstatSync(fd).size;
      const magic = h.readUInt32LE(0);
      if (got < HEADER_BYTES || (magic !== MAGIC && magic !== MAGIC_DENSE) || h.readUInt32LE(16) !== crc32(h.subarray(0, 16))) throw new CorruptError(`${file}: not a base checksum file, or its header is damaged`, DAMAGED_HINT);
      if (h.readUInt32LE(4) !== opts.blockSize || h.readDoubleLE(8) !== opts.logicalBlocks) throw new CorruptError(`${file}: made for ${h.readDoubleLE(8)} blocks of ${h.readUInt32LE(4)} bytes, not the destination's ${opts.logicalBlocks} of ${opts.blockSize}`, DAMAGED_HINT);
      if (size !== HEADER_BYTES + opts.logicalBlocks * 4) throw new CorruptError(`${file}: ${size} bytes, not ${HEADER_BYTES + opts.logicalBlocks * 4}: cut short or grown`, DAMAGED_HINT);
      return new BaseSums(file, fd, opts.blockSize, opts.logicalBlocks, magic === MAGIC ? zeroBlockCrc(opts.blockSize) : 0);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
  }

  /** The checksums of LBNs [first, first + n), from the file's little-endian words (the platforms node runs imgstream on are little-endian). */
  read(first: number, n: number): Uint32Array {
    const buf = Buffer.alloc(n * 4);
    try {
      const got = fs.readSync(this.fd, buf, 0, buf.length, HEADER_BYTES + first * 4);
      if (got !== buf.length) throw new CorruptError(`${this.file}: cut short at LBN ${first + Math.floor(got / 4)}`, DAMAGED_HINT);
    } catch (err) {
      if (err instanceof CorruptError) throw err;
      throw fromSystemError(err, this.file, 'reading the base checksums');
    }
    const entries = new Uint32Array(buf.buffer, buf.byteOffset, n);
    if (this.xor !== 0) for (let i = 0; i < n; i++) entries[i] ^= this.xor;
    return entries;
  }

  /** Takes the checksums of the blocks interval `ix` holds (its index's; a zero block's for those it zeroes). Not durable before sync(). */
  takeInterval(ix: IntervalIndex): void {
    const zero = zeroBlockCrc(this.blockSize);
    // read, change and write back each chunk of entries the interval touches (its index is
    // in ascending LBN order; a run of zeros may span chunks)
    let chunk = -1;
    let entries: Uint32Array | null = null;
    const writeBack = () => {
      if (entries === null) return;
      const first = chunk * CHUNK_ENTRIES;
      if (this.xor !== 0) for (let i = 0; i < entries.length; i++) entries[i] ^= this.xor;
      try {
        fs.writeSync(this.fd, new Uint8Array(entries.buffer, entries.byteOffset, entries.length * 4), 0, entries.length * 4, HEADER_BYTES + first * 4);
      } catch (err) {
        throw fromSystemError(err, this.file, 'writing the base checksums');
      }
      entries = null;
    };
    const at = (lbn: number): Uint32Array => {
      const c = Math.floor(lbn / CHUNK_ENTRIES);
      if (c !== chunk || entries === null) {
        writeBack();
        chunk = c;
        const first = c * CHUNK_ENTRIES;
        entries = this.read(first, Math.min(CHUNK_ENTRIES, this.logicalBlocks - first));
      }
      return entries;
    };
    for (let e = 0; e < ix.lbns.length; e++) {
      const lbn = ix.lbns[e];
      const run = entryBlocks(ix, e);
      if (ix.offsets[e] >= 0) {
        at(lbn)[lbn - Math.floor(lbn / CHUNK_ENTRIES) * CHUNK_ENTRIES] = ix.crcs[e];
        continue;
      }
      for (let from = lbn; from < lbn + run; ) {
        const first = Math.floor(from / CHUNK_ENTRIES) * CHUNK_ENTRIES;
        const to = Math.min(lbn + run, first + CHUNK_ENTRIES);
        at(from).fill(zero, from - first, to - first);
        from = to;
      }
    }
    writeBack();
  }

  sync(): void {
    try {
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      throw fromSystemError(err, this.file, 'syncing the base checksums');
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

const DAMAGED_HINT = 'the base cannot be checked against it: move the destination aside and protect to a new one, or restore as of a point from a full resync';

/**
 * Checks blocks of the base read at LBNs [first, first + n) (`data`, whole blocks) against
 * their entries, except the LBNs `skip` says are taken from elsewhere; returns the LBNs
 * that fail.
 */
export function mismatches(sums: BaseSums, first: number, data: Buffer, skip: (lbn: number) => boolean = () => false): number[] {
  const bs = sums.blockSize;
  const n = data.length / bs;
  const entries = sums.read(first, n);
  const bad: number[] = [];
  for (let k = 0; k < n; k++) {
    if (skip(first + k)) continue;
    if (crc32(data.subarray(k * bs, (k + 1) * bs)) !== entries[k]) bad.push(first + k);
  }
  return bad;
}

/**
 * Checks LBNs [first, first + entries.length) that the base leaves unmapped (they read as
 * zeros) against their entries `entries` (from read()), except the LBNs `skip` names;
 * returns the LBNs whose entry is not a zero block's. No data is read.
 */
export function zeroMismatches(blockSize: number, first: number, entries: Uint32Array, skip: (lbn: number) => boolean = () => false): number[] {
  const zero = zeroBlockCrc(blockSize);
  if (allZeroSums(entries, zero)) return []; // compared at once, not entry by entry: a large thin disk is mostly such stretches
  const bad: number[] = [];
  for (let k = 0; k < entries.length; k++) if (entries[k] !== zero && !skip(first + k)) bad.push(first + k);
  return bad;
}

/** A buffer of zero blocks' checksums, at least `n` entries long (grown as asked). */
let zeroSums: { crc: number; words: Buffer } | null = null;

/** Whether every entry of `entries` is `zero` (a zero block's crc32). */
function allZeroSums(entries: Uint32Array, zero: number): boolean {
  const bytes = entries.length * 4;
  if (zeroSums === null || zeroSums.crc !== zero || zeroSums.words.length < bytes) {
    const words = Buffer.alloc(Math.max(bytes, zeroSums?.words.length ?? 0));
    new Uint32Array(words.buffer, words.byteOffset, words.length / 4).fill(zero);
    zeroSums = { crc: zero, words };
  }
  return Buffer.from(entries.buffer, entries.byteOffset, bytes).equals(zeroSums.words.subarray(0, bytes));
}

/** What is wrong with base blocks that fail their checksums. */
export function baseDamageWhat(bad: number[]): string {
  return `block ${bad[0]}${bad.length > 1 ? ` and ${bad.length - 1} more` : ''} fail${bad.length > 1 ? '' : 's'} ${bad.length > 1 ? 'their checksums' : 'its checksum'} in ${BASE_SUMS_FILE}`;
}

/** The error for base blocks that fail their checksums. */
export function baseDamage(baseFile: string, bad: number[]): CorruptError {
  return new CorruptError(
    `${baseFile} (the destination's base volume): ${baseDamageWhat(bad)}`,
    `the recovery points that read it cannot be rebuilt until a full resync of the disk arrives; imgstream protect status ${path.dirname(baseFile)} --verify asks the shipper for one`,
  );
}
