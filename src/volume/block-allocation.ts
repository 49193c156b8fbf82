// Blocks entering and leaving the active file system between two CPs. A new block is
// marked in the active plane and the recording mark-on-allocate plane and stays fresh
// until the next CP (the last CP does not reference it, so it may change in place, and
// released it is free again at once); a released block the last CP references is held
// until the next CP (FreeSpace.releasedSinceCp). A few free blocks are held back for the
// journal, so a full volume can still commit the CP that frees space.
import { VolumeFullError } from '../core/errors.js';
import { Allocator } from './allocator.js';
import type { FreeSpace } from './free-space.js';
import { journalPoolSizeFor, PLANE_ACTIVE } from './layout.js';
import { SparseBitmap } from './sparse-bitmap.js';

/** What allocation needs of the volume. */
export interface AllocationHost {
  readonly path: string;
  /** Sets or clears a plane bit for the next CP; true when it changed. */
  setBit(plane: number, vbn: number, on: boolean): boolean;
  /** The recording mark-on-allocate plane. */
  recordingPlane(): number;
  /** A block the allocator took from shadow snapshots leaves their planes. */
  leaveShadows(vbn: number): void;
  /** Counts blocks entering (+1) or leaving (-1) the active plane. */
  countUsed(delta: number): void;
  /** Journal blocks the next CP would take, were one more block allocated now. */
  cpJournalBlocks(): number;
}

export class BlockAllocation {
  private readonly allocator: Allocator;
  /** VBNs allocated since the last CP: the last CP does not reference them, so they may change in place. */
  private readonly fresh: SparseBitmap;
  /** Free blocks held back for journals (a snapshot delete needs two). In no plane: nothing to persist. */
  private readonly journalPool: number[] = [];
  private readonly journalPoolSize: number;

  constructor(private readonly space: FreeSpace, cursor: number, private readonly h: AllocationHost) {
    this.allocator = new Allocator(space, cursor);
    this.fresh = new SparseBitmap(space.wordsPerChunk);
    this.journalPoolSize = journalPoolSizeFor(space.nblocks);
  }

  /** Where the allocator continues (persisted in the root record). */
  get cursor(): number {
    return this.allocator.cursor;
  }

  /** The free space changed in a way the allocator cannot see: it looks again. */
  reset(): void {
    this.allocator.reset();
  }

  /** A new VBN in the active plane (and the recording mark-on-allocate plane). */
  allocate(): number {
    // the CP that commits this block must find its journal's blocks: a block the CP could
    // not commit is refused here, so a full volume answers "full" and can still take the
    // CP that frees space (with shadow snapshots, a CP dirties more plane blocks than the
    // fixed reserve covers: a server on such a volume went on acknowledging writes no CP
    // could commit)
    const target = Math.max(this.journalPoolSize, this.h.cpJournalBlocks());
    try {
      while (this.journalPool.length < target) {
        const v = this.take();
        this.space.reserved.add(v);
        this.journalPool.push(v);
      }
    } catch {
      /* the pool keeps what it got */
    }
    if (this.journalPool.length < target) throw new VolumeFullError('volume is full: no free block left', 'delete snapshots you no longer need, or create a larger volume');
    const vbn = this.take();
    this.h.setBit(PLANE_ACTIVE, vbn, true);
    this.h.setBit(this.h.recordingPlane(), vbn, true);
    this.fresh.add(vbn);
    this.h.countUsed(1);
    return vbn;
  }

  /** A block for the journal: one held back, or a free one (the caller reserves it). */
  takeForJournal(): number {
    return this.journalPool.pop() ?? this.take();
  }

  /** Takes `vbn` out of the active plane. */
  release(vbn: number): void {
    if (!this.h.setBit(PLANE_ACTIVE, vbn, false)) return;
    this.h.countUsed(-1);
    if (this.fresh.has(vbn)) {
      this.fresh.delete(vbn);
      this.h.setBit(this.h.recordingPlane(), vbn, false);
      this.allocator.returned(vbn);
    } else this.space.releasedSinceCp.add(vbn);
  }

  isFresh(vbn: number): boolean {
    return this.fresh.has(vbn);
  }

  /** The VBNs allocated since the last CP, as runs [first, count] in order. */
  freshRuns(): Array<[number, number]> {
    const runs: Array<[number, number]> = [];
    for (const v of this.fresh.values()) {
      const last = runs[runs.length - 1];
      if (last && last[0] + last[1] === v) last[1]++;
      else runs.push([v, 1]);
    }
    return runs;
  }

  /** A CP committed (or the changes since the last one were thrown away): nothing is fresh. */
  endChangeSet(): void {
    this.fresh.clear();
    this.allocator.reset();
  }

  /** A free VBN from the allocator; one taken from shadow snapshots leaves their planes. */
  private take(): number {
    let a;
    try {
      a = this.allocator.allocate();
    } catch (err) {
      if (err instanceof VolumeFullError) throw new VolumeFullError(`${this.h.path}: ${err.message}`, err.hint);
      throw err;
    }
    if (a.fromShadow) this.h.leaveShadows(a.vbn);
    return a.vbn;
  }
}
