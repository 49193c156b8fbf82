// A volume: one file or block device holding a logical disk mapped write-anywhere, its
// blockmap (active plane, two mark-on-allocate planes, one plane per snapshot), the
// snapshot table and two root records. See layout.ts for where things are,
// format/volume-root.ts for the root record and cp-journal.ts for a consistency point.
// VolumeCore (volume-core.ts) holds the state and the change set a CP commits; Volume
// adds what the rest of imgstream does with a volume: opening and creating it, snapshots,
// restore and mirror support, counting and reading. Both delegate to the parts:
// free-space.ts, block-allocation.ts, snapshot-table.ts, snapshot-ops.ts, slot-planes.ts,
// mark-on-allocate.ts, volume-open.ts.
import type { RootRecord } from '../format/volume-root.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { BlockFile } from './block-file.js';
import { PLANE_ACTIVE } from './layout.js';
import { LogicalMap } from './logical-map.js';
import { SparseBitmap } from './sparse-bitmap.js';
import type { VolumeLock } from './volume-lock.js';
import { openLocked, openView, type OpenOptions } from './volume-open.js';
import type { PlaneSource } from '../image/plane-source.js';
import { volumePlaneSource } from './volume-plane-source.js';
import { isZero } from './zero.js';
import { createVolume, type CreateOptions } from './volume-create.js';
import { countUnion } from './plane-census.js';
import { replacePlane } from './plane-edit.js';
import { FLAG_MIRROR, FLAG_MIRROR_BROKEN, FLAG_PROTECT_BASE, FLAG_RESTORE_UNFINISHED } from './volume-flags.js';
import { VolumeCore } from './volume-core.js';
import { crashPoint } from './crash-point.js';
import { MIRROR_SNAPSHOT_PREFIX } from './snapshot-name.js';
import { InvalidInputError } from '../core/errors.js';

export { FLAG_MIRROR, FLAG_MIRROR_BROKEN };

export type { CreateOptions, OpenOptions };
export type { VolumeObserver } from './volume-core.js';

export class Volume extends VolumeCore {
  // ---------------------------------------------------------------- create / open

  static create(path: string, opts: CreateOptions): RootRecord {
    return createVolume(path, opts);
  }

  static open(path: string, opts: OpenOptions): Volume {
    return openLocked(path, opts, (file, lock, root) => Volume.load(path, file, lock, root, opts.write, !opts.write || !!opts.dropDamagedSnapshots));
  }

  /**
   * A read-only view of a volume that another process holds and changes (a server),
   * opened without the lock; only pinned snapshots may be read through one (see
   * volume-open.ts for why, and for shadow snapshots).
   */
  static openView(path: string): Volume {
    return openView(path, (file, root) => Volume.load(path, file, null, root, false, true));
  }

  /** The volume of a CP: its root record, the journal it names (applied, or overlaid by a reader) and its snapshot table. */
  /** `tolerant`: damaged snapshot table entries are skipped (their slots stay taken; see damagedSnapshotSlots), not refused. */
  private static load(path: string, file: BlockFile, lock: VolumeLock | null, root: RootRecord, writable: boolean, tolerant: boolean): Volume {
    const vol = new Volume(path, file, lock, root, writable);
    vol.loadJournal();
    vol.table.load(vol.root.maxSnapshots, vol.taint.isTainted, tolerant);
    return vol;
  }

  // ---------------------------------------------------------------- snapshots

  /** Slots of snapshot table entries that are damaged (a read-only open skips them: their snapshots cannot be read). */
  get damagedSnapshotSlots(): readonly number[] {
    return this.table.damagedSlots;
  }

  /** Empties the damaged snapshot table entries and commits (a writer opened with dropDamagedSnapshots); the slots emptied. */
  dropDamagedSnapshots(): number[] {
    this.assertWritable();
    const dropped = this.table.takeDamaged();
    for (const slot of dropped) this.writeTableEntry(slot, null);
    this.commit();
    return dropped;
  }

  /** `internal`: a snapshot a command takes for itself (a temporary one): no observer hears of it. */
  /** `createdMs`: when it was taken, where that was elsewhere (a source snapshot arriving at a protection destination's base). */
  createSnapshot(name: string, opts: { shadow?: boolean; master?: boolean; internal?: boolean; createdMs?: number } = {}): SnapshotEntry {
    this.assertWritable();
    const entry = this.snapshotOps.take(name, opts);
    // committed, not yet told to a write journal: its recovery makes good a stop here
    crashPoint('snapshot-taken', this.path);
    if (!opts.internal) this.observer?.snapshotTaken(entry);
    return entry;
  }

  /** Renames snapshot `id` at the next CP, without taking one (a restore gives snapshots their names at the stream's source). */
  renameSnapshotEntry(id: number, to: string): SnapshotEntry {
    this.assertWritable();
    return this.snapshotOps.renameEntry(id, to);
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
    return this.snapshotOps.rename(from, to, () => this.observer?.snapshotRenaming?.(from, to));
  }

  /** Makes a regular snapshot a shadow one (see SnapshotOps.makeShadow), in a CP of its own. */
  shadowSnapshot(name: string): SnapshotEntry {
    this.assertWritable();
    const e = this.table.byName(name);
    // a mirror's incremental starts from its own snapshot: the allocator must not take its blocks
    if (e.name.toLowerCase().startsWith(MIRROR_SNAPSHOT_PREFIX)) {
      throw new InvalidInputError(`${this.path}: snapshot "${e.name}" is a mirror update's own: the mirror's next incremental starts from it`, 'leave it to the mirror (its next update deletes the older ones)');
    }
    return this.snapshotOps.makeShadow(name);
  }

  /** Marks a snapshot a shadow one with the next CP (a restore whose stream's base is one at its source). */
  markShadowEntry(name: string): SnapshotEntry {
    this.assertWritable();
    return this.snapshotOps.makeShadow(name, false);
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
    this.setFlags(FLAG_MIRROR | FLAG_MIRROR_BROKEN, (f.mirror ? FLAG_MIRROR : 0) | (f.broken ? FLAG_MIRROR_BROKEN : 0));
  }

  /** True when the volume is a protection destination's base (written only by the destination). */
  get protectBase(): boolean {
    return (this.root.flags & FLAG_PROTECT_BASE) !== 0;
  }

  /** Marks the volume a protection destination's base, or not (a copy restored from one); at the next CP. */
  setProtectBase(on: boolean): void {
    this.setFlags(FLAG_PROTECT_BASE, on ? FLAG_PROTECT_BASE : 0);
  }

  get restoreUnfinished(): boolean {
    return (this.root.flags & FLAG_RESTORE_UNFINISHED) !== 0;
  }

  /** Marks a restore that rewrites the active disk in place as under way (see FLAG_RESTORE_UNFINISHED), or done; at the next CP. */
  setRestoreUnfinished(on: boolean): void {
    this.setFlags(FLAG_RESTORE_UNFINISHED, on ? FLAG_RESTORE_UNFINISHED : 0);
  }

  /** Sets the root flags in `mask` to `value`'s; at the next CP (none when they are so already). */
  private setFlags(mask: number, value: number): void {
    this.assertWritable();
    const flags = (this.root.flags & ~mask) | value;
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

  /** Free blocks held back for journals, which countFree() leaves out. */
  get heldBackBlocks(): number {
    return this.space.heldBack;
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
