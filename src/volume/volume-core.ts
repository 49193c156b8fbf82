// An open volume's state and its change set: the parts of a volume wired together (see
// volume.ts for the list), its root record, the planes and their bits, blocks entering
// and leaving the active plane, the logical disk written block by block, and the
// consistency point that commits the change set (commit) or the return to the last one
// (abort). Volume (volume.ts) adds opening, snapshots, restore and mirror support, and
// counting on top.
import type { BlockSet } from '../core/block-set.js';
import type { RootRecord } from '../format/volume-root.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { BlockAllocation } from './block-allocation.js';
import type { BlockFile } from './block-file.js';
import { VolumeLayout } from './layout.js';
import { LogicalMap, type MapStorage } from './logical-map.js';
import { MetadataStore } from './metadata-store.js';
import { PlaneScanner } from './plane-scanner.js';
import { SnapshotTable } from './snapshot-table.js';
import { SlotPlanes } from './slot-planes.js';
import { SnapshotOps } from './snapshot-ops.js';
import { MarkOnAllocate } from './mark-on-allocate.js';
import type { VolumeLock } from './volume-lock.js';
import { isZero } from './zero.js';
import { readRootRecord } from './root-reader.js';
import { applyJournal, readJournal, writeConsistencyPoint, writeRootRecord } from './cp-journal.js';
import { FreeSpace } from './free-space.js';
import { ShadowTaint } from './shadow-taint.js';
import { setPlaneBit } from './plane-edit.js';

/** Who must know of a volume's CPs and snapshots as they happen (the write journal). */
export interface VolumeObserver {
  /** A CP is about to write: what must be durable before it, must be now. */
  beforeCp(): void;
  /** A CP committed `generation`. */
  afterCp(generation: number): void;
  snapshotTaken(entry: SnapshotEntry): void;
  /** A snapshot is being renamed: told before the CP that commits it (so what must be durable with it is). */
  snapshotRenaming?(from: string, to: string): void;
  /**
   * Blocks of the disk changed by something other than a client's writes (an import),
   * told before the CP that commits them (`what` says by what).
   */
  blocksChanged?(blocks: BlockSet, what: string): void;
}

export class VolumeCore implements MapStorage {
  readonly layout: VolumeLayout;
  readonly meta: MetadataStore;
  readonly map: LogicalMap;
  /** Blocks entering and leaving the active plane (the allocator, fresh blocks, the journal's reserve). */
  protected readonly blocks: BlockAllocation;
  protected root: RootRecord;
  protected readonly table: SnapshotTable;
  protected readonly slots: SlotPlanes;
  protected readonly snapshotOps: SnapshotOps;
  protected readonly moa: MarkOnAllocate;
  /** Which VBNs are held and by what (the allocator's view); holds the VBNs released or reserved since the last CP. */
  protected readonly space: FreeSpace;
  protected readonly taint: ShadowTaint;
  protected changed = false;
  private closed = false;
  /** Told of every CP and snapshot (a write journal: see ../journal). */
  observer: VolumeObserver | null = null;

  protected constructor(readonly path: string, readonly file: BlockFile, protected readonly lock: VolumeLock | null, root: RootRecord, readonly writable: boolean) {
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
      isZeroWords: (w) => this.meta.isZero(w),
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
      // the CP journal copies every dirty metadata block, plus its index (2: generous); one
      // more allocation may dirty a block of the active and the recording plane, and with
      // shadow snapshots one of a shadow's plane, and the CP may write their table entries (taint)
      cpJournalBlocks: () => {
        const shadows = this.table.shadowCount;
        return this.meta.dirtyCount() + 2 + 2 + (shadows > 0 ? 1 + Math.min(this.layout.tableBlocks, shadows) : 0);
      },
    });
  }

  /** The lock this process holds on the volume (null for a view). */
  get volumeLock(): VolumeLock | null {
    return this.lock;
  }

  protected loadJournal(): void {
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

  protected writeTableEntry(slot: number, e: SnapshotEntry | null): void {
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

  /** Whether words from planeWords() are the shared block of zeros (most of a sparse volume's planes): a pass may skip them. False does not mean non-zero. */
  isZeroWords(words: Uint32Array): boolean {
    return this.meta.isZero(words);
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
    this.bitEdits++;
    return true;
  }

  /** Plane bits set or cleared by allocation and release since the volume was opened: what has to be looked at again when it moved. */
  get planeBitEdits(): number {
    return this.bitEdits;
  }
  private bitEdits = 0;

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

  /** Byte ranges of the volume file holding the blocks allocated since the last CP (see punch-hole.ts). */
  freshRanges(): Array<[number, number]> {
    const bs = this.layout.blockSize;
    return this.blocks.freshRuns().map(([v, n]) => [this.layout.vbnOffset(v), n * bs]);
  }

  protected assertWritable(): void {
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

  /** Reads a plane front to back in large windows (see plane-scanner.ts). */
  scanner(plane: number): PlaneScanner {
    return new PlaneScanner(this.file, this.layout, this.meta, plane);
  }
}
