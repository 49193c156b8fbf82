// One shipped interval at a protection destination: DEST/intervals/NNNNNNNNNN.ivl, written
// under a temporary name, fsynced and renamed, so it exists whole or not at all. Blocks
// are read back one by one (restore as of a time reads only the versions it chooses), so
// every block has its own checksum in the index, and the header and index one together.
//
//   0  u32  magic "IPI1", or "IPI2" when an entry is a run of zeros (older versions
//            of imgstream refuse such a file rather than read a run as one block)
//   4  u32  H: bytes of the header's JSON (IntervalHeader)
//   8       the header's JSON (seq, times, journal records, kind, snapshots taken, renames)
//   8+H     block data, blockSize bytes each, in index order (zero blocks have none)
//   X       the index: E entries of 24 bytes, ascending LBN, never overlapping:
//             f64 lbn, f64 byte offset of the data, or -N: N blocks from lbn read as
//             zeros (a trim's run, N >= 1), u32 CRC-32 of the data (0 for zeros),
//             u32 reserved (0)
//   end-32  trailer: u32 magic "IPT1", u32 E, f64 X (index offset),
//             u32 CRC-32 of bytes 0..8+H and of the index, u32 reserved, f64 seq
//
// The header's blockCount is the blocks the interval holds; its `entries`, E when that
// differs (absent: every entry is one block).
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, ImgstreamError, InvalidInputError, fromSystemError } from '../core/errors.js';
import { crc32 } from '../format/crc32.js';
import { isZero } from '../volume/zero.js';
import type { ShippedInterval, SnapshotRename } from './destination-api.js';
import { fsyncDirectory } from '../fs/durable-file.js';
import { EarlyWriteback } from '../fs/writeback.js';
import { DirectAppender } from '../fs/direct-appender.js';
import { alignedBuffers } from '../fs/direct-io.js';

const HEAD_MAGIC = 0x3149_5049; // "IPI1"
const HEAD_MAGIC_RUNS = 0x3249_5049; // "IPI2"
const TRAILER_MAGIC = 0x3154_5049; // "IPT1"
const ENTRY_BYTES = 24;
const TRAILER_BYTES = 32;
/** Bytes gathered before one write: bounds memory whatever the interval's size. */
const WRITE_BUFFER_BYTES = 1 << 20;
/** Bytes written between two early syncs (see EarlyWriteback). */
const EARLY_WRITEBACK_BYTES = 16 << 20;

/** What an interval file says of itself. */
export interface IntervalHeader {
  seq: number;
  start: number;
  end: number;
  journalFrom: number;
  journalTo: number;
  kind: 'journal' | 'resync';
  snapshots: string[];
  /** Snapshots the source renamed during the interval, in order (absent: none). */
  renames?: SnapshotRename[];
  blockSize: number;
  /** Blocks the interval holds. */
  blockCount: number;
  /** Index entries, when not blockCount (some are runs of zeros). */
  entries?: number;
  /** The source volume's uuid. */
  source: string;
}

/**
 * An interval file's index: entry i is block lbns[i], at byte offsets[i], with checksum
 * crcs[i]; or, when offsets[i] is negative, -offsets[i] blocks from lbns[i] that read as
 * zeros. entryBlocks() says how many blocks an entry stands for.
 */
export interface IntervalIndex {
  file: string;
  header: IntervalHeader;
  lbns: Float64Array;
  offsets: Float64Array;
  crcs: Uint32Array;
  bytes: number;
}

/** Blocks entry `i` of `ix` stands for: 1 for data, the run's length for zeros. */
export function entryBlocks(ix: { offsets: Float64Array }, i: number): number {
  const o = ix.offsets[i];
  return o < 0 ? -o : 1;
}

export function intervalFileName(seq: number): string {
  return `${String(seq).padStart(10, '0')}.ivl`;
}

/** The seq a file name of intervalFileName() holds, or null for any other name. */
export function intervalSeqOf(name: string): number | null {
  const m = /^(\d{10})\.ivl$/.exec(name);
  return m ? Number(m[1]) : null;
}

/**
 * Writes `interval` as DIR/NNNNNNNNNN.ivl, durably (file and directory fsynced). Streams:
 * at most about 1 MiB of data in memory besides the index. Refuses blocks out of order,
 * out of the disk, of the wrong size, or a count that differs from blockCount, leaving
 * nothing behind. Returns the file's bytes.
 */
export async function writeIntervalFile(dir: string, interval: ShippedInterval, geometry: { blockSize: number; logicalBlocks: number; source: string }): Promise<number> {
  const { blockSize, logicalBlocks } = geometry;
  const header: IntervalHeader = {
    seq: interval.seq,
    start: interval.start,
    end: interval.end,
    journalFrom: interval.journalFrom,
    journalTo: interval.journalTo,
    kind: interval.kind,
    snapshots: [...interval.snapshots],
    ...(interval.renames?.length ? { renames: interval.renames.map(({ from, to }) => ({ from, to })) } : {}),
    blockSize,
    blockCount: interval.blockCount,
    ...(interval.entries !== undefined && interval.entries !== interval.blockCount ? { entries: interval.entries } : {}),
    source: geometry.source,
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const head = Buffer.alloc(8 + json.length);
  head.writeUInt32LE(header.entries === undefined ? HEAD_MAGIC : HEAD_MAGIC_RUNS, 0);
  head.writeUInt32LE(json.length, 4);
  json.copy(head, 8);

  const final = path.join(dir, intervalFileName(interval.seq));
  const tmp = path.join(dir, `.${intervalFileName(interval.seq)}.${process.pid}.tmp`);
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'w', 0o644);
  } catch (err) {
    throw fromSystemError(err, tmp, 'creating an interval file');
  }
  let done = false;
  // with direct I/O where the file system takes it: through the page cache, a daemon
  // receiving 60 MiB of intervals a second spent a third of its CPU copying them into
  // freshly allocated pages (then on their writeback), for files read again only by a
  // restore or a fold
  const stages = stageSets.pop() ?? alignedBuffers(DIRECT_STAGES, DIRECT_STAGE_BYTES);
  const direct = new DirectAppender(fd, tmp, stages);
  try {
    const sink = direct.direct ? direct : new BufferedSink(fd);
    await sink.append(head);
    const n = interval.entries ?? interval.blockCount;
    const index = Buffer.alloc(n * ENTRY_BYTES);
    let count = 0;
    let blocks = 0;
    let dataAt = head.length;
    let next = 0; // the first LBN the next entry may start at
    for await (const b of interval.blocks) {
      if (count >= n) throw new InvalidInputError(`interval ${interval.seq}: more ${interval.entries === undefined ? 'blocks' : 'entries'} than its count (${n})`);
      const run = b.count ?? 1;
      if (!Number.isSafeInteger(run) || run < 1 || (run > 1 && b.data !== null)) throw new InvalidInputError(`interval ${interval.seq}: block ${b.lbn}: a run of ${run} blocks with data`);
      if (!Number.isSafeInteger(b.lbn) || b.lbn < next || b.lbn + run > logicalBlocks) {
        throw new InvalidInputError(`interval ${interval.seq}: block ${b.lbn}${run > 1 ? ` (a run of ${run})` : ''} is out of order or outside the disk (${logicalBlocks} blocks)`);
      }
      if (b.data !== null && b.data.length !== blockSize) throw new InvalidInputError(`interval ${interval.seq}: block ${b.lbn} has ${b.data.length} bytes, not ${blockSize}`);
      next = b.lbn + run;
      blocks += run;
      const e = count * ENTRY_BYTES;
      index.writeDoubleLE(b.lbn, e);
      if (b.data === null || isZero(b.data)) {
        index.writeDoubleLE(-run, e + 8);
        index.writeUInt32LE(0, e + 16);
      } else {
        index.writeDoubleLE(dataAt, e + 8);
        // (the block's checksum where its source has it: computed as it arrived, or carried from the journal)
        index.writeUInt32LE(b.crc ?? crc32(b.data), e + 16);
        // (copied before the next block is asked for: the blocks' buffers may be reused by their producer then)
        if (!sink.tryAppend(b.data)) await sink.append(b.data);
        dataAt += blockSize;
      }
      count++;
    }
    if (count !== n) throw new InvalidInputError(`interval ${interval.seq}: ${count} ${interval.entries === undefined ? 'blocks' : 'entries'}, but its count says ${n}`);
    if (blocks !== interval.blockCount) throw new InvalidInputError(`interval ${interval.seq}: ${blocks} blocks, but its count says ${interval.blockCount}`);
    await sink.append(index);
    const trailer = Buffer.alloc(TRAILER_BYTES);
    trailer.writeUInt32LE(TRAILER_MAGIC, 0);
    trailer.writeUInt32LE(n, 4);
    trailer.writeDoubleLE(dataAt, 8);
    trailer.writeUInt32LE(crc32(index, crc32(head)), 16);
    trailer.writeDoubleLE(interval.seq, 24);
    await sink.append(trailer);
    await sink.finish();
    await direct.close();
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    done = true;
    fs.renameSync(tmp, final);
    fsyncDirectory(dir);
    return sink.length;
  } catch (err) {
    await direct.close();
    if (!done) {
      try {
        fs.closeSync(fd);
      } catch {
        /* closed */
      }
    }
    fs.rmSync(tmp, { force: true });
    throw fromSystemError(err, final, 'writing an interval file');
  } finally {
    // (every write on them is over once close() resolved)
    if (stageSets.length < KEPT_STAGE_SETS) stageSets.push(stages);
  }
}

/** Direct writes' staging buffers, kept from one interval file to the next (fresh memory costs a page fault per page). */
const DIRECT_STAGES = 4;
const DIRECT_STAGE_BYTES = 1 << 20;
const KEPT_STAGE_SETS = 2;
const stageSets: Buffer[][] = [];

/**
 * Where direct I/O is refused from the start (tmpfs before Linux 6.6): writes gathered in
 * one reused buffer (the blocks' buffers may be reused by their producer once the next is
 * asked for), written through the page cache, a large interval synced early as it goes.
 */
class BufferedSink {
  length = 0;
  private readonly gather = Buffer.allocUnsafe(WRITE_BUFFER_BYTES);
  private gathered = 0;
  private readonly early: EarlyWriteback;

  constructor(private readonly fd: number) {
    this.early = new EarlyWriteback(fd, EARLY_WRITEBACK_BYTES);
  }

  tryAppend(b: Buffer): boolean {
    this.append(b);
    return true;
  }

  append(b: Buffer): void {
    if (this.gathered + b.length > this.gather.length) this.flush();
    if (b.length > this.gather.length) return this.write(b);
    this.gather.set(b, this.gathered);
    this.gathered += b.length;
  }

  async finish(): Promise<void> {
    this.flush();
    await this.early.done();
  }

  private flush(): void {
    if (this.gathered) this.write(this.gather.subarray(0, this.gathered));
    this.gathered = 0;
  }

  private write(buf: Buffer): void {
    let off = 0;
    while (off < buf.length) off += fs.writeSync(this.fd, buf, off, buf.length - off, this.length + off);
    this.length += buf.length;
    this.early.wrote(buf.length);
  }
}

function damaged(file: string, what: string): CorruptError {
  // DEST/intervals/NNNNNNNNNN.ivl: the destination is two levels up
  const dest = path.dirname(path.dirname(file));
  return new CorruptError(`${file}: damaged interval file (${what})`, `the recovery points from this interval on cannot be rebuilt, up to a full resync after it; restore as of an earlier time (imgstream protect status ${dest} --points lists the points and the resyncs)`);
}

/**
 * Reads an interval file's header and index (not its data), checking their checksum.
 * `headerOnly`: the header alone, checked against the trailer and the file's length but
 * not by checksum (listing a long window reads a few hundred bytes per interval; the
 * index is checked when a restore reads it).
 */
export function readIntervalIndex(file: string, opts: { headerOnly?: boolean } = {}): IntervalIndex {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw fromSystemError(err, file, 'opening an interval file');
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw damaged(file, 'not a file');
    const size = st.size;
    if (size < 8 + TRAILER_BYTES) throw damaged(file, `truncated: ${size} bytes`);
    const trailer = Buffer.alloc(TRAILER_BYTES);
    fs.readSync(fd, trailer, 0, TRAILER_BYTES, size - TRAILER_BYTES);
    if (trailer.readUInt32LE(0) !== TRAILER_MAGIC) throw damaged(file, 'no trailer: truncated or overwritten');
    const n = trailer.readUInt32LE(4);
    const indexAt = trailer.readDoubleLE(8);
    if (!Number.isSafeInteger(indexAt) || indexAt + n * ENTRY_BYTES + TRAILER_BYTES !== size) throw damaged(file, 'its length does not match its trailer');
    const start = Buffer.alloc(8);
    fs.readSync(fd, start, 0, 8, 0);
    const h = start.readUInt32LE(4);
    const magic = start.readUInt32LE(0);
    if ((magic !== HEAD_MAGIC && magic !== HEAD_MAGIC_RUNS) || 8 + h > indexAt) throw damaged(file, 'bad header');
    const head = Buffer.alloc(8 + h);
    fs.readSync(fd, head, 0, head.length, 0);
    const index = Buffer.alloc(opts.headerOnly ? 0 : n * ENTRY_BYTES);
    if (n && !opts.headerOnly) fs.readSync(fd, index, 0, index.length, indexAt);
    if (!opts.headerOnly && crc32(index, crc32(head)) !== trailer.readUInt32LE(16)) throw damaged(file, 'header or index checksum mismatch');
    let header: IntervalHeader;
    try {
      header = JSON.parse(head.subarray(8).toString('utf8')) as IntervalHeader;
    } catch {
      throw damaged(file, 'unreadable header');
    }
    if ((header.entries ?? header.blockCount) !== n || header.seq !== trailer.readDoubleLE(24) || (header.entries !== undefined) !== (magic === HEAD_MAGIC_RUNS)) throw damaged(file, 'header and trailer disagree');
    // a file copied or renamed over another interval's name: its points would be taken for that one's
    const named = intervalSeqOf(path.basename(file));
    if (named !== null && named !== header.seq) throw damaged(file, `it holds interval ${header.seq}, not ${named}`);
    const m = opts.headerOnly ? 0 : n;
    const lbns = new Float64Array(m);
    const offsets = new Float64Array(m);
    const crcs = new Uint32Array(m);
    let blocks = 0;
    let next = 0;
    for (let i = 0; i < m; i++) {
      lbns[i] = index.readDoubleLE(i * ENTRY_BYTES);
      offsets[i] = index.readDoubleLE(i * ENTRY_BYTES + 8);
      crcs[i] = index.readUInt32LE(i * ENTRY_BYTES + 16);
      // what a restore relies on: ascending, not overlapping, whole runs (the checksum matched, so only a writer's fault breaks this)
      const run = entryBlocks({ offsets }, i);
      if (!(lbns[i] >= next) || !Number.isSafeInteger(run)) throw damaged(file, `entry ${i} is out of order`);
      next = lbns[i] + run;
      blocks += run;
    }
    if (!opts.headerOnly && blocks !== header.blockCount) throw damaged(file, `its entries hold ${blocks} blocks, its header says ${header.blockCount}`);
    return { file, header, lbns, offsets, crcs, bytes: size };
  } catch (err) {
    throw err instanceof ImgstreamError ? err : fromSystemError(err, file, 'reading an interval file');
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads the header (status, snapshot names); `verify: false` skips the index checksum. */
export function readIntervalHeader(file: string, opts: { verify?: boolean } = {}): IntervalHeader & { bytes: number } {
  const ix = readIntervalIndex(file, { headerOnly: opts.verify === false });
  return { ...ix.header, bytes: ix.bytes };
}

/**
 * The header of a file whose index cannot be trusted (truncated, damaged): read from its
 * first bytes alone, or null when those are damaged too. For listing a damaged interval.
 */
export function readDamagedHeader(file: string): IntervalHeader | null {
  try {
    const fd = fs.openSync(file, 'r');
    try {
      const start = Buffer.alloc(8);
      if (fs.readSync(fd, start, 0, 8, 0) !== 8 || (start.readUInt32LE(0) !== HEAD_MAGIC && start.readUInt32LE(0) !== HEAD_MAGIC_RUNS)) return null;
      const json = Buffer.alloc(start.readUInt32LE(4));
      if (json.length > 1 << 20 || fs.readSync(fd, json, 0, json.length, 8) !== json.length) return null;
      const h = JSON.parse(json.toString('utf8')) as IntervalHeader;
      return Number.isFinite(h.end) && Number.isFinite(h.start) ? h : null;
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return null;
  }
}

/**
 * Reads every data block of an interval file and checks each against its checksum, in
 * runs of consecutive blocks of up to `buf.length` bytes (one read per run, not per
 * block; `buf` holds whole blocks). Calls `ran(blocks)` after each run, and awaits it.
 * Returns the data blocks read; damage is CorruptError naming the first bad block.
 */
export async function checkIntervalData(fd: number, ix: IntervalIndex, blockSize: number, buf: Buffer, ran: (blocks: number) => Promise<void> | void): Promise<number> {
  const { file, lbns, offsets, crcs } = ix;
  let total = 0;
  for (let i = 0; i < lbns.length; ) {
    if (offsets[i] < 0) {
      i++;
      continue;
    }
    // the entries of a run: data blocks lying one after another (zero entries have no data, so are skipped)
    const run: number[] = [];
    const at = offsets[i];
    let j = i;
    for (; j < lbns.length && (run.length + 1) * blockSize <= buf.length; j++) {
      if (offsets[j] < 0) continue;
      if (offsets[j] !== at + run.length * blockSize) break;
      run.push(j);
    }
    const want = run.length * blockSize;
    const got = fs.readSync(fd, buf, 0, want, at);
    for (let k = 0; k < run.length; k++) {
      const e = run[k];
      if ((k + 1) * blockSize > got || crc32(buf.subarray(k * blockSize, (k + 1) * blockSize)) !== crcs[e]) throw damaged(file, `block ${lbns[e]} checksum mismatch`);
    }
    total += run.length;
    i = j;
    await ran(run.length);
  }
  return total;
}

/** Reads one block of an interval file at byte `offset` into `out`, checking its checksum. */
export function readIntervalBlock(fd: number, file: string, lbn: number, offset: number, crc: number, out: Buffer): void {
  const got = fs.readSync(fd, out, 0, out.length, offset);
  if (got !== out.length || crc32(out) !== crc) throw damaged(file, `block ${lbn} checksum mismatch`);
}
