// A volume: one file or block device holding a logical disk mapped write-anywhere, its
// blockmap (active plane, two mark-on-allocate planes, one plane per snapshot), the
// snapshot table and two root records. See layout.ts for where things are,
// format/volume-root.ts for the root record and cp-journal.ts for a consistency point.
// The class holds the state and delegates to its parts: free-space.ts, block-allocation.ts,
// snapshot-table.ts, snapshot-ops.ts, slot-planes.ts, mark-on-allocate.ts, volume-open.ts.
import type { RootRecord } from '../format/volume-root.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { BlockAllocation } from './block-allocation.js';
import type { BlockFile } from './block-file.js';
import { PLANE_ACTIVE, VolumeLayout } from './layout.js';
import { LogicalMap, type MapStorage } from './logical-map.js';
import { MetadataStore } from './metadata-store.js';
import { PlaneScanner } from './plane-scanner.js';
import { SparseBitmap } from './sparse-bitmap.js';
import { SnapshotTable } from './snapshot-table.js';
import { SlotPlanes } from './slot-planes.js';
import { SnapshotOps } from './snapshot-ops.js';
import { MarkOnAllocate } from './mark-on-allocate.js';
import type { VolumeLock } from './volume-lock.js';
import { openLocked, openView, type OpenOptions } from './volume-open.js';
import type { PlaneSource } from '../image/plane-source.js';
import { volumePlaneSource } from './volume-plane-source.js';
import { isZero } from './zero.js';
import { createVolume, type CreateOptions } from './volume-create.js';
import { readRootRecord } from './root-reader.js';
import { applyJournal, readJournal, writeConsistencyPoint, writeRootRecord } from './cp-journal.js';
import { countUnion } from './plane-census.js';
import { FreeSpace } from './free-space.js';
import { ShadowTaint } from './shadow-taint.js';
import { replacePlane, setPlaneBit } from './plane-edit.js';
import { FLAG_MIRROR, FLAG_MIRROR_BROKEN } from './volume-flags.js';

export { FLAG_MIRROR, FLAG_MIRROR_BROKEN };

export type { CreateOptions, OpenOptions };

/** Who must know of a volume's CPs and snapshots as they happen (the write journal). */
export interface VolumeObserver {
  /** A CP is about to write: what must be durable before it, must be now. */
  beforeCp(): void;
  /** A CP committed `generation`. */
  afterCp(generation: number): void;
  snapshotTaken(entry: SnapshotEntry): void;
}

export class Volume implements MapStorage {
  readonly layout: VolumeLayout;
  readonly meta: MetadataStore;
  readonly map: LogicalMap;
  /** Blocks entering and leaving the active plane (the allocator, fresh blocks, the journal's reserve). */
  private readonly blocks: BlockAllocation;
  private root: RootRecord;
  private readonly table: SnapshotTable;
  private readonly slots: SlotPlanes;
  private readonly snapshotOps: SnapshotOps;
  private readonly moa: MarkOnAllocate;
  /** Which VBNs are held and by what (the allocator's view); holds the VBNs released or reserved since the last CP. */
  private readonly space: FreeSpace;
  private readonly taint: ShadowTaint;
  private changed = false;
  private closed = false;
  /** Told of every CP and snapshot (a write journal: see ../journal). */
  observer: VolumeObserver | null = null;

  private constructor(readonly path: string, readonly file: BlockFile, private readonly lock: VolumeLock | null, root: RootRecord, readonly writable: boolean) {
    this.root = root;
    this.layout = new VolumeLayout(root.blockSize, root.nblocks, root.maxSnapshots);
    this.meta = new MetadataStore(file, this.layout);
    this.table = new SnapshotTable(this.meta, this.layout, path);
    this.taint = new ShadowTaint({ path, file, layout: this.layout, table: this.table, root: () => this.root, testBit: (plane, vbn) => this.testBit(plane, vbn) });
    this.slots = new SlotPlanes(file, this.layout, this.meta);
    this.space = new FreeSpace(this.layout, {
      snapshots: () => this.snapshots(),
      departedSlots: this.table.departed,
      planeWords: (p, c) => this.planeWords(p, c),
      scanner: (p) => this.scanner(p),
      usedBlocks: () => this.root.usedBlocks,
    });
    this.map = new LogicalMap(this, root.mapDepth, root.mapRoot, !writable);
    this.moa = new MarkOnAllocate({ meta: this.meta, layout: this.layout, root: () => this.root, changed: () => (this.changed = true) });
    this.snapshotOps = new SnapshotOps({
      path,
      layout: this.layout,
      table: this.table,
      slots: this.slots,
      root: () => this.root,
      mapRoot: () => this.map.root,
      commit: () => this.commit(),
      writeTableEntry: (slot, e) => this.writeTableEntry(slot, e),
      clearBit: (plane, vbn) => this.setBit(plane, vbn, false),
      resetAllocator: () => this.blocks.reset(),
    });
    this.blocks = new BlockAllocation(this.space, root.allocCursor, {
      path,
      setBit: (plane, vbn, on) => this.setBit(plane, vbn, on),
      recordingPlane: () => this.moa.recording(),
      leaveShadows: (vbn) => {
        this.taint.beforeReuse(vbn);
        this.snapshotOps.leaveShadows(vbn);
      },
      countUsed: (delta) => (this.root.usedBlocks += delta),
    });
  }

  // ---------------------------------------------------------------- create / open

  static create(path: string, opts: CreateOptions): RootRecord {
    return createVolume(path, opts);
  }

  static open(path: string, opts: OpenOptions): Volume {
    return openLocked(path, opts, (file, lock, root) => Volume.load(path, file, lock, root, opts.write));
  }

  /**
   * A read-only view of a volume that another process holds and changes (a server),
   * opened without the lock; only pinned snapshots may be read through one (see
   * volume-open.ts for why, and for shadow snapshots).
   */
  static openView(path: string): Volume {
    return openView(path, (file, root) => Volume.load(path, file, null, root, false));
  }

  /** The volume of a CP: its root record, the journal it names (applied, or overlaid by a reader) and its snapshot table. */
  private static load(path: string, file: BlockFile, lock: VolumeLock | null, root: RootRecord, writable: boolean): Volume {
    const vol = new Volume(path, file, lock, root, writable);
    vol.loadJournal();
    vol.table.load(vol.root.maxSnapshots, vol.taint.isTainted);
    return vol;
  }

  /** The lock this process holds on the volume (null for a view). */
  get volumeLock(): VolumeLock | null {
    return this.lock;
  }

  private loadJournal(): void {
    if (!this.writable) this.file.setOverlay(this.layout.blockSize, new Map()); // a view's earlier attempt may have set one
    const journal = readJournal(this.file, this.layout, this.path, this.root);
    if (!journal) return;
    if (this.writable) {
      applyJournal(this.file, this.layout, journal.blocks);
      this.writeRoot({ ...this.root, generation: this.root.generation + 1, journalHead: 0, journalCount: 0, journalCrc: 0 });
    } else {
      // not applied in place yet: reads see it as it will be, the metadata through the
      // store and every block (data blocks a mirror transfer replaced too) through the file
      this.meta.setOverlay(journal.blocks);
      this.file.setOverlay(this.layout.blockSize, journal.blocks);
      for (const v of journal.vbns) this.space.reserved.add(v);
    }
  }

  private writeTableEntry(slot: number, e: SnapshotEntry | null): void {
    if (this.table.write(slot, e)) this.blocks.reset();
    this.changed = true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.file.close();
    this.lock?.release();
  }

  // ---------------------------------------------------------------- state

  get rootRecord(): Readonly<RootRecord> {
    return { ...this.root, mapRoot: this.map.root };
  }
  get blockSize(): number {
    return this.layout.blockSize;
  }
  get nblocks(): number {
    return this.layout.nblocks;
  }
  get logicalBlocks(): number {
    return this.root.logicalSize / this.layout.blockSize;
  }
  get hasUncommittedChanges(): boolean {
    return this.changed;
  }

  snapshots(): SnapshotEntry[] {
    return this.table.list();
  }

  snapshot(name: string): SnapshotEntry {
    return this.table.byName(name);
  }

  // ---------------------------------------------------------------- planes

  planeWords(plane: number, chunk: number): Uint32Array {
    return this.meta.read(this.layout.planeBlock(plane, chunk)).words;
  }

  testBit(plane: number, vbn: number): boolean {
    const bits = this.layout.bitsPerPlaneBlock;
    const w = this.planeWords(plane, Math.floor(vbn / bits));
    const b = vbn % bits;
    return (w[b >>> 5] & (1 << (b & 31))) !== 0;
  }

  private setBit(plane: number, vbn: number, on: boolean): boolean {
    if (!setPlaneBit(this.meta, this.layout, plane, vbn, on)) return false;
    this.changed = true;
    return true;
  }

  // ---------------------------------------------------------------- MapStorage

  readBlock(vbn: number, buf: Buffer): void {
    this.file.read(buf, this.layout.vbnOffset(vbn));
  }

  writeBlock(vbn: number, buf: Buffer): void {
    this.file.write(buf, this.layout.vbnOffset(vbn));
  }

  /** A new VBN in the active plane (and the recording mark-on-allocate plane). */
  allocate(): number {
    this.assertWritable();
    return this.blocks.allocate();
  }

  release(vbn: number): void {
    this.blocks.release(vbn);
  }

  /** Logical blocks that became mapped (import writes blocks itself and reports them here). */
  noteMapped(delta: number): void {
    this.root.mappedBlocks += delta;
    this.changed = true;
  }

  isFresh(vbn: number): boolean {
    return this.blocks.isFresh(vbn);
  }

  private assertWritable(): void {
    if (!this.writable) throw new Error('volume opened read-only');
  }

  // ---------------------------------------------------------------- logical disk

  /** Writes one logical block (zeros unmap it). Returns true when the content changed. */
  writeLogical(lbn: number, data: Buffer, known?: { vbn: number; zero: boolean }): void {
    this.assertWritable();
    const zero = known?.zero ?? isZero(data);
    const old = known ? known.vbn : this.map.lookup(lbn);
    if (zero) {
      if (old === 0) return;
      this.map.set(lbn, 0);
      this.release(old);
      this.root.mappedBlocks--;
      this.changed = true;
      return;
    }
    if (old !== 0 && this.blocks.isFresh(old)) {
      this.writeBlock(old, data);
      return;
    }
    const vbn = this.allocate();
    this.writeBlock(vbn, data);
    this.map.set(lbn, vbn);
    if (old !== 0) this.release(old);
    else this.root.mappedBlocks++;
    this.changed = true;
  }

  /** Commits everything changed since the last CP. A no-op when nothing changed. */
  commit(): void {
    this.assertWritable();
    if (!this.changed) return;
    this.observer?.beforeCp();
    this.map.writeDirty();
    // journal blocks go to free VBNs that no plane records: reserved until the CP is clean
    const journalVbns: number[] = [];
    const take = (): number => {
      const v = this.blocks.takeForJournal();
      this.space.reserved.add(v);
      journalVbns.push(v);
      return v;
    };
    try {
      this.taint.settle();
      writeConsistencyPoint(this.file, this.layout, this.meta, () => ({ ...this.root, mapRoot: this.map.root, allocCursor: this.blocks.cursor, taintedShadows: [], allShadowsTainted: false }), take, (r) => this.writeRoot(r));
    } finally {
      for (const v of journalVbns) this.space.reserved.delete(v);
    }
    this.meta.markClean();
    this.endChangeSet();
    this.observer?.afterCp(this.root.generation);
  }

  private writeRoot(r: RootRecord): void {
    writeRootRecord(this.file, this.layout, r);
    this.root = { ...r };
  }

  /** Throws away every change since the last CP (the file keeps the last CP). */
  abort(): void {
    this.meta.discardDirty();
    this.map.forget(this.root.mapRoot);
    this.endChangeSet();
    this.root = readRootRecord(this.file, this.path);
    this.table.load(this.root.maxSnapshots, this.taint.isTainted);
  }

  /** The state since the last CP is now the committed one (or thrown away). */
  private endChangeSet(): void {
    this.table.departed.clear();
    this.space.releasedSinceCp.clear();
    this.blocks.endChangeSet();
    this.changed = false;
  }

  // ---------------------------------------------------------------- snapshots

  /** `internal`: a snapshot a command takes for itself (a temporary one): no observer hears of it. */
  createSnapshot(name: string, opts: { shadow?: boolean; master?: boolean; internal?: boolean } = {}): SnapshotEntry {
    this.assertWritable();
    const entry = this.snapshotOps.take(name, opts);
    if (!opts.internal) this.observer?.snapshotTaken(entry);
    return entry;
  }

  /** Removes a snapshot from the table at the next CP, without taking one (a mirror drops several in one CP). */
  dropSnapshotEntry(name: string): SnapshotEntry {
    this.assertWritable();
    return this.snapshotOps.drop(name);
  }

  deleteSnapshot(name: string): SnapshotEntry {
    this.assertWritable();
    return this.snapshotOps.delete(name);
  }

  renameSnapshot(from: string, to: string): SnapshotEntry {
    this.assertWritable();
    return this.snapshotOps.rename(from, to);
  }

  /** Makes the other mark-on-allocate plane the recording one (mirroring swaps after each transfer). */
  swapMarkOnAllocate(): { shipping: number; recording: number } {
    this.assertWritable();
    return this.moa.swap();
  }

  /** Clears a mark-on-allocate plane (after its blocks were shipped). */
  clearMarkOnAllocate(plane: number): void {
    this.assertWritable();
    this.moa.clear(plane);
  }

  // ---------------------------------------------------------------- restore support
  // A restore writes blocks at the VBNs they had on the source. Only VBNs the committed
  // state does not use are written; snapshot planes go to free slots directly; then one
  // CP installs the snapshots and makes the active file system the newest of them.

  /** VBNs of chunk c that the committed state (any plane) or this process holds. */
  occupiedWords(c: number): Uint32Array {
    return this.space.occupiedWords(c);
  }

  /** Holds a VBN back from the allocator until release (incoming blocks of a restore). */
  reserve(vbn: number): void {
    this.space.reserved.add(vbn);
  }

  unreserve(vbn: number): void {
    this.space.reserved.delete(vbn);
  }

  freeSnapshotSlots(): number[] {
    return this.table.freeSlots();
  }

  /** Writes plane block `chunk` of a free slot in place (no committed state references it). */
  writeSlotPlane(slot: number, chunk: number, data: Uint8Array): void {
    if (this.table.at(slot) !== null || this.table.departed.has(slot)) throw new Error('slot in use');
    this.slots.write(slot, chunk, data);
  }

  /** Zeroes the plane blocks of a free slot that were not written (left over from an older snapshot). */
  clearSlotPlaneExcept(slot: number, written: Set<number>): void {
    this.slots.clearExcept(slot, written);
  }

  /** Adds snapshot entries whose planes are already in their slots (journaled with the next CP). */
  installSnapshot(e: SnapshotEntry): void {
    this.assertWritable();
    this.snapshotOps.install(e);
  }

  // ---------------------------------------------------------------- mirror support

  /**
   * Replaces the contents of a block the last CP still uses, atomically with the next CP:
   * the new contents travel in that CP's journal (a mirror transfer whose block lands on
   * a VBN the destination's old state holds, e.g. one a deleted snapshot freed and the
   * source reused).
   */
  stageBlock(vbn: number, data: Buffer): void {
    this.assertWritable();
    if (!(vbn > 0 && vbn < this.layout.nblocks) || data.length !== this.layout.blockSize) throw new Error('bad staged block');
    this.meta.replace(this.layout.dataStart + vbn, Buffer.from(data));
    this.changed = true;
  }

  /**
   * A block the next CP replaces (stageBlock) leaves the shadow snapshots that held it, as
   * when the allocator reuses one: their bits clear and their reuse counts grow.
   */
  reuseShadowBlock(vbn: number): void {
    this.assertWritable();
    this.snapshotOps.leaveShadows(vbn);
  }

  /** Sets the recording mark-on-allocate bits of blocks that arrived without allocate() (mirror, restore): a cascade ships them on. */
  markRecorded(vbns: SparseBitmap): void {
    this.assertWritable();
    this.moa.record(vbns);
  }

  /** ORs mark-on-allocate plane `from` into plane `into` (a failed transfer's plane folded into the next one). */
  mergeMarkOnAllocate(from: number, into: number): void {
    this.assertWritable();
    this.moa.merge(from, into);
  }

  get mirrorFlags(): { mirror: boolean; broken: boolean } {
    return { mirror: (this.root.flags & FLAG_MIRROR) !== 0, broken: (this.root.flags & FLAG_MIRROR_BROKEN) !== 0 };
  }

  /** Marks the volume a mirror destination (read-only to everything but the mirror), or broken off, or neither; at the next CP. */
  setMirrorFlags(f: { mirror: boolean; broken: boolean }): void {
    this.assertWritable();
    const flags = (this.root.flags & ~(FLAG_MIRROR | FLAG_MIRROR_BROKEN)) | (f.mirror ? FLAG_MIRROR : 0) | (f.broken ? FLAG_MIRROR_BROKEN : 0);
    if (flags === this.root.flags) return;
    this.root.flags = flags;
    this.changed = true;
  }

  /** Makes the active file system the state of snapshot `name` (its plane, map root and counts). */
  resetActiveTo(name: string): void {
    this.assertWritable();
    const s = this.snapshot(name);
    const plane = this.layout.snapshotPlane(s.slot);
    // blocks leaving the active plane are still the last CP's until the next CP commits
    replacePlane(this.meta, this.layout, PLANE_ACTIVE, (c) => this.planeWords(plane, c), (c, leaving) => this.space.releasedSinceCp.orChunk(c, leaving));
    this.map.forget(s.mapRoot);
    this.root.usedBlocks = s.blocks;
    this.root.mappedBlocks = s.mappedBlocks;
    this.blocks.reset();
    this.changed = true;
  }

  // ---------------------------------------------------------------- reading

  /** A read-only logical map of a snapshot (or of the active file system when name is undefined). */
  mapOf(name?: string): LogicalMap {
    if (name === undefined) return this.map;
    const s = this.snapshot(name);
    return new LogicalMap(this, this.root.mapDepth, s.mapRoot, true);
  }

  /** Counts the set bits of a plane: one pass over its blocks. */
  countPlane(plane: number): number {
    return countUnion(this.layout, [this.scanner(plane)]);
  }

  /**
   * Blocks that only shadow snapshots hold: the allocator takes them when no free block is
   * left (clearing their bits), so a change may use them as well as the free ones.
   */
  countReusable(): number {
    return this.space.countReusable();
  }

  /** Blocks no plane holds (the allocator may still hold back a few for the journal). One pass over all planes. */
  countFree(): number {
    return this.space.countFree();
  }

  /** Reads a plane front to back in large windows (see plane-scanner.ts). */
  scanner(plane: number): PlaneScanner {
    return new PlaneScanner(this.file, this.layout, this.meta, plane);
  }

  /** A lower bound of the free blocks without a pass over the planes: snapshots may share blocks with each other and with the active file system. */
  freeLowerBound(): number {
    return this.space.lowerBound();
  }

  /** The planes of this volume as a source for storage image expressions. */
  planeSource(): PlaneSource {
    return volumePlaneSource(this.layout, this.snapshots(), (p) => this.scanner(p));
  }

}

export { isZero };
