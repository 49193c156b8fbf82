// Appends every change an NBD client makes to a served volume to the volume's write
// journal, time-stamped at acknowledgement (see index.ts).
//
// Durability follows the volume's: a record is written (to the page cache) before the
// request's reply, and fsynced before every consistency point, so the journal always
// holds at least what the volume's last CP holds; FLUSH and FUA are answered after a CP,
// so after them the journal is on disk too. After a crash, open() cuts a torn tail off,
// and replays onto the volume the records after the last CP marker (journal-recovery.ts
// finds both): writes acknowledged but never committed are then in the volume as they
// are in the journal (and, perhaps, already at a destination), so source and
// destination never diverge.
//
// Size: the records a destination has not acknowledged (shipped.json) are kept up to
// `limitBytes`. Past it the journal overflows: those records are dropped, the blocks
// they and later writes change are tracked instead (dirty.json and dirty.bits, saved at
// each CP: dirty-blocks.ts), and
// the shipper's next transfer is a resync of exactly those blocks.
import fs from 'node:fs';
import { fromSystemError } from '../core/errors.js';
import { readLogicalBytes } from '../volume/logical-io.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { Volume, VolumeObserver } from '../volume/volume.js';
import { BlockSet } from '../core/block-set.js';
import { journalDirOf, journalIdOf, listSegments, readDirty, readShipped, removeDirty, type DirtySet } from './journal-files.js';
import { recoveredDirty, saveDirtySet, type Dirty } from './dirty-blocks.js';
import { overflowDirty, resyncDirty, wholeDiskDirty } from './dirty-sets.js';
import { changesAfter, type JournalChanges } from './journal-reader.js';
import { markerPayload, parseMarker, RecordKind, type JournalRecord } from './record.js';
import { JournalAppender } from './journal-appender.js';
import { replayTail, scanJournal, unrecordedSnapshots } from './journal-recovery.js';
import { crashPoint } from '../volume/crash-point.js';
import { mapRootOf } from './map-root-crc.js';
import { UnshippedBytes } from './unshipped-bytes.js';
import { makeDirectories } from '../core/make-dirs.js';

export interface JournalWriterOptions {
  /** Bytes of unshipped records kept before the journal overflows (default 1 GiB). */
  limitBytes?: number;
  /** A new segment is begun past this size (default 64 MiB). */
  segmentBytes?: number;
  /** Problems no client can be told about. */
  report?: (message: string) => void;
}

/** What open() found and did. */
export interface JournalRecovery {
  /** Records after the last CP marker applied to the volume again. */
  replayed: number;
  /** Bytes of a torn last record cut off. */
  tornBytes: number;
  /** The volume's generation after the replay. */
  generation: number;
}

const DEFAULT_LIMIT = 1 << 30;
const DEFAULT_SEGMENT = 64 << 20;

/** The journal each open volume writes to, for the server's control ops (journal-ops.ts). */
const writers = new WeakMap<Volume, JournalWriter>();

export function journalOf(vol: Volume): JournalWriter | undefined {
  return writers.get(vol);
}

export class JournalWriter implements VolumeObserver {
  readonly dir: string;
  /** Where the records go (journal-appender.ts). */
  private readonly out: JournalAppender;
  /** Bytes of records a destination has not acknowledged (recomputed at each CP from `unshipped`). */
  private held = 0;
  private unshipped = new UnshippedBytes(0);
  private readonly limit: number;
  private readonly segmentLimit: number;
  private readonly report: (m: string) => void;
  /** Set while overflowed: the LBNs changed since dirty.after, in place of records. */
  private dirty: Dirty | null = null;
  private dirtyChanged = false;
  readonly recovery: JournalRecovery;

  private constructor(private readonly vol: Volume, opts: JournalWriterOptions) {
    this.dir = journalDirOf(vol.path);
    this.limit = opts.limitBytes ?? DEFAULT_LIMIT;
    // segments small enough that deleting shipped ones frees space well within the limit
    this.segmentLimit = opts.segmentBytes ?? Math.max(1 << 20, Math.min(DEFAULT_SEGMENT, Math.floor(this.limit / 4)));
    this.report = opts.report ?? (() => {});
    this.out = new JournalAppender(this.dir, { report: (m) => this.report(m), written: (seq) => this.unshipped.mark(seq, false), dropped: (bytes) => this.unshipped.added(-bytes) });
    this.recovery = { replayed: 0, tornBytes: 0, generation: vol.rootRecord.generation };
  }

  /** Opens (creating) the journal of a volume opened for writing, recovering it after a crash. */
  static open(vol: Volume, opts: JournalWriterOptions = {}): JournalWriter {
    const w = new JournalWriter(vol, opts);
    try {
      makeDirectories(w.dir);
    } catch (err) {
      throw fromSystemError(err, w.dir, 'creating the journal');
    }
    w.recover();
    journalIdOf(w.dir); // (after the recovery: a journal it refuses is left as it was)
    vol.observer = w;
    writers.set(vol, w);
    return w;
  }

  /** Sequence number of the last record written (0: none ever). */
  get lastSeq(): number {
    return this.out.seq;
  }

  /** True while the journal is overflowed (changes tracked as dirty blocks until a resync). */
  get overflowed(): boolean {
    return this.dirty !== null;
  }

  /**
   * True while a resync waits: the journal is overflowed, or the changed blocks an overflow
   * saved are not resynced yet (a server restarted since journals its writes again meanwhile;
   * `protect status` says OVERFLOWED either way).
   */
  get resyncWaits(): boolean {
    return this.dirty !== null || readDirty(this.dir) !== null;
  }

  // ---------------------------------------------------------------- records of changes

  /** Records a WRITE of `length` bytes at byte `offset`, already applied (`data` is what the client sent). */
  wrote(offset: number, data: Buffer): void {
    const bs = this.vol.blockSize;
    if (offset % bs === 0 && data.length % bs === 0) {
      if (data.length > 0) this.appendData(offset / bs, data.length / bs, data);
      return;
    }
    this.appendReadBack(offset, data.length);
  }

  /** Records a TRIM or WRITE_ZEROES of `length` bytes at `offset`, already applied: whole blocks as zeros, partial ones as they read now. */
  zeroed(offset: number, length: number): void {
    if (length === 0) return;
    const bs = this.vol.blockSize;
    const end = offset + length;
    const firstWhole = Math.ceil(offset / bs);
    const endWhole = Math.floor(end / bs);
    if (endWhole <= firstWhole) return this.appendReadBack(offset, length);
    if (offset < firstWhole * bs) this.appendReadBack(offset, firstWhole * bs - offset);
    this.append(RecordKind.Zero, firstWhole, endWhole - firstWhole, null);
    if (end > endWhole * bs) this.appendReadBack(endWhole * bs, end - endWhole * bs);
  }

  /** Records that a snapshot was taken now (it arrives at destinations as a snapshot). */
  snapshotTaken(entry: SnapshotEntry): void {
    this.append(RecordKind.Snapshot, 0, 0, markerPayload({ name: entry.name }));
    if (this.dirty !== null) {
      this.dirty.snapshots.push(entry.name);
      this.dirtyChanged = true;
    }
  }

  /**
   * Records a snapshot's rename, before the CP that commits it (so the CP finds the record
   * on disk, and a crash before the CP replays it): destinations learn the new name.
   */
  snapshotRenaming(from: string, to: string): void {
    this.append(RecordKind.Rename, 0, 0, markerPayload({ from, to }));
    if (this.dirty !== null) {
      // dropped with the records while overflowed: the resync carries it
      this.dirty.renames.push({ from, to, seq: this.out.seq });
      // a snapshot taken meanwhile is named as it is now by the resync's report of it
      const i = this.dirty.snapshots.lastIndexOf(from);
      if (i >= 0) this.dirty.snapshots[i] = to;
      this.dirtyChanged = true;
    }
  }

  /**
   * Blocks changed without records (an import into the volume while nobody served it):
   * tracked as after an overflow, so the next protect transfer resyncs just those blocks
   * (and the records not shipped yet), instead of stopping at a disk changed without its
   * journal. Saved with the dirty set before the CP that commits them.
   */
  blocksChanged(blocks: BlockSet, what: string): void {
    if (this.dirty === null) this.overflow(what);
    this.dirty!.blocks.addAll(blocks);
    this.dirty!.reason ??= what;
    this.dirtyChanged = true;
  }

  // ---------------------------------------------------------------- CPs

  /** Before a CP: everything recorded is on disk (so the journal, or the list of changed blocks after an overflow, holds at least what the CP will). */
  beforeCp(): void {
    this.sync();
    this.saveDirty();
  }

  private saveDirty(): void {
    if (this.dirty === null || !this.dirtyChanged) return;
    saveDirtySet(this.dir, this.dirty, this.out.seq);
    this.dirtyChanged = false;
  }

  /** After a CP committed `generation`: marks it, trims shipped segments, checks the size limit. */
  afterCp(generation: number): void {
    if (this.dirty !== null && this.out.cpsInSegment > 0) crashPoint('overflowed-cp', this.vol.path); // (tests: after a marker of this segment)
    this.append(RecordKind.Cp, 0, 0, markerPayload({ generation, ...mapRootOf(this.vol) }));
    this.out.cpsInSegment++;
    this.unshipped.mark(this.out.seq, true);
    if (this.out.segBytes >= this.segmentLimit) this.out.roll();
    this.trimShipped();
    // all shipped: begin a new segment so the old one can go
    if (this.out.segBytes >= this.segmentLimit / 4 && (readShipped(this.dir)?.journalTo ?? 0) >= this.out.seq) {
      this.out.roll();
      this.trimShipped();
    }
    if (this.dirty === null && this.held > this.limit) this.overflow();
    this.saveDirty();
  }

  /** Writes and fsyncs what is pending (FLUSH/FUA without a CP, and close). */
  sync(): void {
    this.out.sync();
  }

  /**
   * A resync point, from the server's queue (journal-ops.ts): the caller has committed
   * and taken `snapshot`; the changed blocks since the last acknowledged record are
   * fixed in dirty.json and journaling of data resumes after this marker.
   */
  resyncPoint(snapshot: string): { seq: number; dirty: DirtySet } {
    const shipped = readShipped(this.dir)?.journalTo ?? 0;
    const prev = readDirty(this.dir);
    // a resync asked again before the last was acknowledged: the records since then changed blocks too
    const since = this.changedSince(prev ? prev.upTo : shipped);
    const next = resyncDirty({ dir: this.dir, logicalBlocks: this.vol.logicalBlocks, report: this.report, prev, since, shipped }, this.dirty);
    this.dirty = null;
    const dirty = saveDirtySet(this.dir, next, this.out.seq + 1);
    this.append(RecordKind.Resync, 0, 0, markerPayload({ snapshot, after: dirty.after }));
    this.sync();
    return { seq: this.out.seq, dirty };
  }

  /**
   * A seed point, from the server's queue (journal-ops.ts): the caller has committed and
   * taken the seed's snapshot, which holds every change so far. An overflow before it (the
   * journal outgrew its limit while no destination was fed) ends here: the blocks it
   * tracked are in the seed, and records of data resume after this point (without this,
   * writes after the seed were only tracked, never journaled, and never shipped).
   */
  seedPoint(): number {
    if (this.dirty !== null || readDirty(this.dir) !== null) {
      this.dirty = null;
      this.dirtyChanged = false;
      removeDirty(this.dir); // a destination fed before this one finds records missing: its next transfer resyncs every block
    }
    this.sync();
    return this.out.seq;
  }

  close(): void {
    if (!this.out.isOpen) return;
    if (this.vol.observer === this) this.vol.observer = null;
    writers.delete(this.vol);
    this.out.close();
  }

  // ---------------------------------------------------------------- internals

  private appendReadBack(offset: number, length: number): void {
    const bs = this.vol.blockSize;
    const first = Math.floor(offset / bs);
    const end = Math.ceil((offset + length) / bs);
    const buf = Buffer.allocUnsafe((end - first) * bs);
    readLogicalBytes(this.vol, this.vol.map, first * bs, buf);
    this.appendData(first, end - first, buf);
  }

  private appendData(lbn: number, count: number, data: Buffer): void {
    this.append(RecordKind.Data, lbn, count, data);
  }

  private append(kind: RecordKind, lbn: number, count: number, payload: Buffer | null): void {
    this.out.check();
    if (this.dirty !== null && (kind === RecordKind.Data || kind === RecordKind.Zero)) {
      this.dirty.blocks.addRange(lbn, count);
      this.dirtyChanged = true;
      return;
    }
    this.unshipped.added(this.out.append(kind, lbn, count, payload));
  }

  /** Writes the records appended since the last flush (before the replies to the requests they record go out: the server's request queue calls it). */
  flush(): void {
    this.out.flush();
  }

  /** Deletes the segments a destination holds entirely; recounts the bytes kept. */
  private trimShipped(): void {
    const shipped = readShipped(this.dir)?.journalTo ?? 0;
    const segs = listSegments(this.dir);
    for (let i = 0; i < segs.length; i++) {
      const s = segs[i];
      const nextFirst = i + 1 < segs.length ? segs[i + 1].firstSeq : Infinity;
      if (s.firstSeq !== this.out.segFirst && nextFirst - 1 <= shipped) fs.rmSync(s.path, { force: true });
    }
    this.held = this.unshipped.after(shipped);
    if (this.dirty === null && readDirty(this.dir) !== null && shipped >= (readDirty(this.dir)!.upTo)) removeDirty(this.dir);
  }

  /** Past the limit: drop every unshipped record, track the blocks they change instead. */
  private overflow(what?: string): void {
    const shipped = readShipped(this.dir)?.journalTo ?? 0;
    const prev = readDirty(this.dir);
    const since = this.changedSince(prev ? Math.min(prev.upTo, shipped) : shipped);
    this.dirty = overflowDirty({ dir: this.dir, logicalBlocks: this.vol.logicalBlocks, report: this.report, prev, since, shipped }, what);
    const { after, blocks } = this.dirty;
    if (what === undefined) this.report(`journal ${this.dir} outgrew its limit (${this.held} bytes not yet shipped): records after ${after} dropped, ${blocks.size} changed blocks tracked for a resync`);
    this.append(RecordKind.Overflow, 0, 0, markerPayload({ after }));
    crashPoint('overflow-marker', this.vol.path);
    saveDirtySet(this.dir, this.dirty, this.out.seq);
    this.dirtyChanged = false;
    this.out.roll();
    for (const s of listSegments(this.dir)) if (s.firstSeq !== this.out.segFirst) fs.rmSync(s.path, { force: true });
    this.unshipped.restart(this.out.seq);
    this.held = 0;
  }

  /** LBNs the records after `after` change, and the snapshots taken and renamed among them (the staged records written first). */
  private changedSince(after: number): JournalChanges {
    this.flush();
    return changesAfter(this.dir, after);
  }

  /** Finds the end, cuts a torn tail, replays the records after the last CP marker (see journal-recovery.ts). */
  private recover(): void {
    const segs = listSegments(this.dir);
    const dirty = readDirty(this.dir);
    const shippedTo = readShipped(this.dir)?.journalTo ?? 0;
    if (segs.length === 0) {
      this.out.seq = dirty ? dirty.upTo : shippedTo;
      this.unshipped = new UnshippedBytes(this.out.seq);
      // (its segments gone: what followed the destination's last record is unknown)
      if (dirty === null && shippedTo > 0) this.lostRecords(shippedTo);
      else this.out.openSegment(this.out.seq + 1, true);
    } else {
      // (a dirty set the destination has not acknowledged yet holds changes made without records)
      const scan = scanJournal(this.dir, segs, this.vol, dirty !== null && (readShipped(this.dir)?.journalTo ?? 0) < dirty.upTo);
      this.out.seq = scan.lastSeq;
      const lost = scan.lastSeq < shippedTo;
      this.unshipped = new UnshippedBytes(scan.lastSeq, scan.byteMarks);
      this.recovery.tornBytes = scan.tornBytes;
      this.out.openSegment(scan.lastSegment.firstSeq, false);
      // numbering goes on after the records a destination holds, before anything is appended
      if (lost) this.lostRecords(shippedTo);
      else if (scan.overflowed || (dirty !== null && dirty.upTo > this.out.seq)) {
        this.dirty = recoveredDirty(this.dir, dirty, this.vol.logicalBlocks, this.report);
        this.dirtyChanged = true;
        // a set saved ahead of the journal's end, with no marker after it: a crash between
        // saving it and the marker that tells a shipper (lostRecords, resyncPoint), which
        // would then take the records after the destination's for all there is to send
        if (!scan.overflowed) this.append(RecordKind.Overflow, 0, 0, markerPayload({ after: this.dirty.after }));
      }
      this.replay(scan.tail, scan.renames);
      // a snapshot whose record a crash cut off (or taken while no journal was open) is recorded now
      for (const s of unrecordedSnapshots(this.vol, scan)) this.snapshotTaken(s);
    }
    this.trimShipped();
    this.append(RecordKind.Open, 0, 0, markerPayload({ uuid: this.vol.rootRecord.uuid, blockSize: this.vol.blockSize, logicalSize: this.vol.rootRecord.logicalSize, generation: this.vol.rootRecord.generation, ...mapRootOf(this.vol) }));
    this.sync();
  }

  /**
   * The journal ends before the records a destination acknowledged (cut short, emptied or
   * restored from an older copy; or a power cut before they reached the disk). Its numbers
   * went on from its end, and a destination took the records after its own as the ones it
   * lacked (a flushed write lost at the destination, exit 0). Said, never silent: numbering
   * goes on after the destination's records, and every block is tracked for a resync.
   */
  private lostRecords(shippedTo: number): void {
    crashPoint('journal-lost', this.vol.path); // (tests: before anything changed)
    // in an order a crash at any step leaves right: the resync's set first (as of the record
    // about to be the first after the destination's), then the numbering, then its marker
    this.dirty = wholeDiskDirty(shippedTo, this.vol.logicalBlocks, 'its journal lost records a destination holds');
    saveDirtySet(this.dir, this.dirty, shippedTo + 1);
    this.dirtyChanged = false;
    if (!this.out.isOpen) {
      this.out.seq = shippedTo; // (no segment was left: the first begins after the destination's records)
      this.out.openSegment(shippedTo + 1, true);
    } else this.skipTo(shippedTo);
    crashPoint('journal-lost-skipped', this.vol.path); // (tests: a segment of its own begun, its marker not written)
    this.append(RecordKind.Overflow, 0, 0, markerPayload({ after: shippedTo }));
    this.report(`journal ${this.dir} lost records: a destination holds records up to ${shippedTo} that it no longer has (the journal cut short, emptied or restored from an older copy, or a power cut before they reached the disk); the next protect transfer resyncs every block`);
  }

  /** The next record is `n` + 1, in a segment of its own (one a crash left empty there is taken as it is). */
  private skipTo(n: number): void {
    this.out.seq = n;
    if (!(this.out.segFirst === n + 1 && this.out.segBytes === 0)) this.out.roll();
    this.unshipped.restart(n);
  }

  private replay(tail: JournalRecord[], renames: Array<{ from: string; to: string }>): void {
    if (tail.length === 0 && renames.length === 0) return;
    this.recovery.replayed = replayTail(this.vol, tail, renames);
    this.recovery.generation = this.vol.rootRecord.generation;
    this.append(RecordKind.Cp, 0, 0, markerPayload({ generation: this.recovery.generation, ...mapRootOf(this.vol) }));
  }
}

export type { DirtySet };
export { parseMarker };
