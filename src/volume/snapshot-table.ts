// The snapshot table of an open volume: one entry per plane slot (format/snapshot-entry.ts),
// read from the metadata area and changed through the metadata store, so a change is
// journaled with the next CP. It also remembers the slots emptied since the last CP: that
// CP still references their blocks, so their planes keep pinning them until the next one.
import { CorruptError, ExistsError, NotFoundError } from '../core/errors.js';
import { decodeSnapshotEntry, encodeSnapshotEntry, SNAPSHOT_ENTRY_BYTES, type SnapshotEntry } from '../format/snapshot-entry.js';
import type { VolumeLayout } from './layout.js';
import type { MetadataStore } from './metadata-store.js';

export class SnapshotTable {
  private entries: Array<SnapshotEntry | null> = [];
  /** Slots of snapshots deleted since the last CP (a journal block must never land on a block the previous state holds). */
  readonly departed = new Set<number>();

  constructor(private readonly meta: MetadataStore, private readonly layout: VolumeLayout, private readonly path: string) {}

  /**
   * Reads every entry through the metadata store (the committed table, or the journal's
   * overlay). A shadow snapshot the root record lists as tainted (blocks taken from it by
   * a change set that never reached its CP) counts as having had blocks reused.
   */
  load(maxSnapshots: number, tainted: (id: number) => boolean = () => false, tolerant = this.tolerant): void {
    this.tolerant = tolerant;
    const per = this.layout.blockSize / SNAPSHOT_ENTRY_BYTES;
    this.entries = [];
    this.damaged = [];
    this.shadows = 0;
    for (let s = 0; s < maxSnapshots; s++) {
      const blk = this.meta.read(this.layout.tableStart + Math.floor(s / per));
      const off = (s % per) * SNAPSHOT_ENTRY_BYTES;
      try {
        const e = decodeSnapshotEntry(blk.buf.subarray(off, off + SNAPSHOT_ENTRY_BYTES), s);
        this.entries.push(e && e.shadow && e.reusedBlocks === 0 && tainted(e.id) ? { ...e, reusedBlocks: 1 } : e);
        if (e?.shadow) this.shadows++;
      } catch (err) {
        if (!tolerant) throw new CorruptError(`${this.path}: ${(err as Error).message} (its snapshot cannot be read)`, `read-only commands still work (volume export, snapshot list, volume check); imgstream volume check ${this.path} --drop-damaged-snapshots drops the entry so the volume can be written again`);
        // a reader goes on without it: the slot stays taken, its plane pinning its blocks (as a deleted snapshot's until the next CP)
        this.damaged.push(s);
        this.departed.add(s);
        this.entries.push(null);
      }
    }
  }

  /** Sets slot `slot` (null empties it) for the next CP. True when a snapshot departed: the free space changed. */
  write(slot: number, e: SnapshotEntry | null): boolean {
    const per = this.layout.blockSize / SNAPSHOT_ENTRY_BYTES;
    const blk = this.meta.forWrite(this.layout.tableStart + Math.floor(slot / per));
    encodeSnapshotEntry(e).copy(blk.buf, (slot % per) * SNAPSHOT_ENTRY_BYTES);
    const departed = e === null && !!this.entries[slot];
    if (departed) this.departed.add(slot);
    this.shadows += (e?.shadow ? 1 : 0) - (this.entries[slot]?.shadow ? 1 : 0);
    this.entries[slot] = e;
    return departed;
  }

  /** Slots whose entries are damaged (a tolerant load skipped them; see load()). */
  get damagedSlots(): readonly number[] {
    return this.damaged;
  }
  private damaged: number[] = [];
  /** Whether load() skips damaged entries (readers, and a writer dropping them) or refuses the volume. */
  private tolerant = false;

  /** The damaged slots, forgotten as such: the caller empties them (volume.ts dropDamagedSnapshots); they stay departed until the next CP. */
  takeDamaged(): number[] {
    const slots = this.damaged;
    this.damaged = [];
    return slots;
  }

  /** Shadow snapshots in the table (kept as entries change: the allocator asks at every block). */
  get shadowCount(): number {
    return this.shadows;
  }
  private shadows = 0;

  at(slot: number): SnapshotEntry | null {
    return this.entries[slot];
  }

  /** The snapshots in the order they were taken. */
  list(): SnapshotEntry[] {
    return this.entries.filter((e): e is SnapshotEntry => e !== null).sort((a, b) => a.id - b.id);
  }

  byName(name: string): SnapshotEntry {
    const e = this.entries.find((x) => x?.name === name);
    if (!e) throw new NotFoundError(`${this.path}: no snapshot named "${name}"`, `list them with: imgstream snapshot list ${this.path}`);
    return e;
  }

  assertNameFree(name: string, hint: string): void {
    if (this.entries.some((e) => e?.name === name)) throw new ExistsError(`${this.path}: snapshot "${name}" already exists`, hint);
  }

  /** The first empty slot, or -1 (a slot emptied since the last CP counts: a snapshot commits first). */
  firstEmptySlot(): number {
    return this.entries.findIndex((e, i) => e === null && !this.damaged.includes(i));
  }

  /** Empty slots whose planes no committed state references (written in place by a restore). */
  freeSlots(): number[] {
    return this.entries.flatMap((e, i) => (e === null && !this.departed.has(i) ? [i] : []));
  }
}
