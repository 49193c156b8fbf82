// The snapshot operations of a writable volume: take, delete, rename, drop and install
// table entries, make a snapshot a shadow one, and shadow snapshots giving up a block. A
// snapshot is the state of a CP: taking one commits, copies the active plane into a free
// slot in place, then commits the table entry naming it. Telling an observer is the
// volume's business.
import { InvalidInputError, VolumeFullError } from '../core/errors.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { RootRecord } from '../format/volume-root.js';
import { crashPoint } from './crash-point.js';
import type { VolumeLayout } from './layout.js';
import type { SlotPlanes } from './slot-planes.js';
import { validateSnapshotName } from './snapshot-name.js';
import type { SnapshotTable } from './snapshot-table.js';

/** What the operations need of the volume. */
export interface SnapshotHost {
  readonly path: string;
  readonly layout: VolumeLayout;
  readonly table: SnapshotTable;
  readonly slots: SlotPlanes;
  /** The current root record (a CP replaces it): the next snapshot id is counted in it. */
  root(): RootRecord;
  mapRoot(): number;
  commit(): void;
  /** Sets a table entry for the next CP. */
  writeTableEntry(slot: number, e: SnapshotEntry | null): void;
  /** Clears a plane bit for the next CP; true when it was set. */
  clearBit(plane: number, vbn: number): boolean;
  /** The allocator's view of free space changed. */
  resetAllocator(): void;
}

export class SnapshotOps {
  constructor(private readonly h: SnapshotHost) {}

  take(name: string, opts: { shadow?: boolean; master?: boolean; createdMs?: number }): SnapshotEntry {
    const h = this.h;
    validateSnapshotName(name);
    h.table.assertNameFree(name, 'choose another name, or delete the old one first');
    const slot = h.table.firstEmptySlot();
    // full of snapshots: volume-full, as full of blocks is (a snapshot must go to make room)
    const slots = h.root().maxSnapshots;
    if (slot < 0) throw new VolumeFullError(`${h.path}: ${slots === 1 ? 'its one snapshot slot is' : `all ${slots} snapshot slots are`} in use`, `free one: imgstream snapshot delete ${h.path} NAME; imgstream snapshot list ${h.path} lists them`);
    h.commit(); // the snapshot is the state of a CP
    h.slots.copyActiveTo(slot); // the slot is referenced by no committed state: written in place
    crashPoint('snapshot-plane', h.path);
    const root = h.root();
    const entry: SnapshotEntry = {
      slot,
      id: root.nextSnapshotId,
      name,
      shadow: !!opts.shadow,
      master: !!opts.master,
      createdMs: opts.createdMs ?? Date.now(),
      mapRoot: h.mapRoot(),
      generation: root.generation,
      blocks: root.usedBlocks,
      mappedBlocks: root.mappedBlocks,
      reusedBlocks: 0,
    };
    root.nextSnapshotId++;
    h.writeTableEntry(slot, entry);
    h.commit();
    h.resetAllocator();
    return entry;
  }

  /** Removes a snapshot from the table at the next CP. */
  drop(name: string): SnapshotEntry {
    const e = this.h.table.byName(name);
    this.h.writeTableEntry(e.slot, null);
    return e;
  }

  delete(name: string): SnapshotEntry {
    const e = this.drop(name);
    this.h.commit();
    this.h.slots.forget(e.slot);
    this.h.resetAllocator();
    return e;
  }

  /** Gives snapshot `id` the name `to` with the next CP (a restore following its source's renames: several at once, so no name is checked here). */
  renameEntry(id: number, to: string): SnapshotEntry {
    const e = this.h.table.list().find((x) => x.id === id);
    if (!e) throw new Error(`no snapshot of id ${id}`);
    validateSnapshotName(to);
    const renamed = { ...e, name: to };
    this.h.writeTableEntry(e.slot, renamed);
    return renamed;
  }

  /** `beforeCommit`: called once the rename is allowed, before the CP that commits it. */
  rename(from: string, to: string, beforeCommit?: () => void): SnapshotEntry {
    const e = this.h.table.byName(from);
    validateSnapshotName(to);
    if (from === to) return e;
    this.h.table.assertNameFree(to, 'choose another name');
    beforeCommit?.();
    const renamed = { ...e, name: to };
    this.h.writeTableEntry(e.slot, renamed);
    this.h.commit();
    return renamed;
  }

  /**
   * Makes a regular snapshot a shadow one (a bookmark): it stops pinning its blocks, which
   * the allocator may reuse when nothing else is free (its bits clear as it does), and it
   * stays the base of the next incremental dump. `commit`: in a CP of its own (else with
   * the next one). A master snapshot stays as it is: replicas synchronise to it.
   */
  makeShadow(name: string, commit = true): SnapshotEntry {
    const e = this.h.table.byName(name);
    if (e.shadow) return e;
    if (e.master) throw new InvalidInputError(`${this.h.path}: snapshot "${name}" is a master snapshot: replicas synchronise to it, so it pins its blocks`, `delete it once the replicas have passed it: imgstream snapshot delete ${this.h.path} ${name}`);
    const shadow = { ...e, shadow: true };
    this.h.writeTableEntry(e.slot, shadow);
    if (commit) this.h.commit();
    this.h.resetAllocator();
    return shadow;
  }

  /** Adds an entry whose plane is already in its slot (journaled with the next CP). */
  install(e: SnapshotEntry): void {
    const h = this.h;
    if (h.table.at(e.slot) !== null) throw new Error('slot in use');
    h.slots.forget(e.slot);
    h.writeTableEntry(e.slot, e);
    h.root().nextSnapshotId = Math.max(h.root().nextSnapshotId, e.id + 1);
    h.resetAllocator();
  }

  /** Clears `vbn` from the shadow snapshots holding it and counts it in their reusedBlocks. */
  leaveShadows(vbn: number): void {
    for (const s of this.h.table.list()) {
      if (s.shadow && this.h.clearBit(this.h.layout.snapshotPlane(s.slot), vbn)) {
        this.h.writeTableEntry(s.slot, { ...s, reusedBlocks: s.reusedBlocks + 1 });
      }
    }
  }
}
