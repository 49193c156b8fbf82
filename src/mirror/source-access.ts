// The source's side of a transfer that writes to the source volume: taking the top
// snapshot and swapping the mark-on-allocate planes before it (prepareSource), emptying
// the shipped plane and dropping the relationship's older snapshots after it
// (finishSource), and how the sender reaches a source (SourceAccess): held by this
// process (localSource), or through the NBD server that holds it (served.ts).
import { InvalidInputError } from '../core/errors.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { PLANE_MOA } from '../volume/layout.js';
import type { Volume } from '../volume/volume.js';
import { identOf, sameSnapshot, type SnapshotIdent } from './protocol.js';

/**
 * The next name of the relationship's snapshots: mirror.TAG.N, N past every number the
 * source and the destination hold and no smaller than the source's next snapshot id (which
 * only grows), so a name never comes back for another state: the user may delete the
 * source's current one (the destination still has it), or the snapshot of a transfer that
 * was killed before the destination got it (only the id counter remembers that one).
 */
function mirrorSnapshotName(vol: Volume, tag: string, destination: SnapshotIdent[]): string {
  const prefix = `mirror.${tag}.`;
  let n = 0;
  for (const s of [...vol.snapshots(), ...destination]) if (s.name.startsWith(prefix)) n = Math.max(n, Number(s.name.slice(prefix.length)) || 0);
  return `${prefix}${Math.max(n + 1, vol.rootRecord.nextSnapshotId)}`;
}

/**
 * How the sender reaches the source volume. Locally it holds the volume (`localSource`);
 * a volume that an NBD server holds is reached through the server, which runs the
 * writing steps, while blocks are read through a view of pinned snapshots.
 */
export interface SourceAccess {
  /** The volume to read (after prepare(), what it made). */
  volume(): Volume;
  /** Takes the transfer's top snapshot and swaps the planes (see prepareSource); the top's name. */
  prepare(p: PrepareArgs): Promise<string>;
  /**
   * Keeps the snapshots `select` names (the transfer's new state) from going while they
   * are read; the volume to read them through. Asks `select` again, of a fresh view, when
   * one of them went before it was held (an overlapping update dropped its old snapshot).
   */
  hold(select: (vol: Volume) => string[]): Promise<Volume>;
  /** After the destination committed (see finishSource). */
  finish(p: FinishArgs): Promise<void>;
  /** Deletes the top snapshot prepare() took, after a transfer that failed with nothing to resume from. */
  discard(name: string): Promise<void>;
}

export interface PrepareArgs {
  tag: string;
  cascade: boolean;
  track: boolean;
  /** The snapshot to send (replicate), or null to take one. */
  top: string | null;
  /** The destination's snapshots (mirror snapshots it lacks are dropped here). */
  keepIds: SnapshotIdent[];
  replicate: boolean;
}

export interface FinishArgs {
  tag: string;
  topId: number;
  cascade: boolean;
  /** The swap count after the prepare of this transfer (absent: from an older sender, the plane is emptied as before). */
  moaSwaps?: number;
}

/**
 * The writing step before a new transfer: the top snapshot and the swap, in one CP. The
 * relationship's snapshots of transfers that never completed are dropped, but those `keep`
 * names (a served volume's readers pin them: the server deletes them once they let go).
 */
export function prepareSource(vol: Volume, p: PrepareArgs, keep: (id: number) => boolean = () => false): string {
  let top: SnapshotEntry;
  if (p.top !== null) top = vol.snapshot(p.top);
  else if (p.cascade) {
    const snaps = vol.snapshots();
    top = snaps[snaps.length - 1];
    if (!top || top.mapRoot !== vol.rootRecord.mapRoot) throw new InvalidInputError(`${vol.path}: this mirror has no complete state to pass on yet`);
  } else top = vol.createSnapshot(mirrorSnapshotName(vol, p.tag, p.keepIds));
  if (p.track && !p.cascade) {
    // snapshots of transfers that never completed: the destination does not have them
    const prefix = `mirror.${p.tag}.`;
    for (const s of vol.snapshots()) {
      if (s.name.startsWith(prefix) && s.id < top.id && !p.keepIds.some((d) => sameSnapshot(identOf(s), d)) && !keep(s.id)) vol.dropSnapshotEntry(s.name);
    }
  }
  if (p.track) {
    const recording = PLANE_MOA[vol.rootRecord.moaCurrent];
    const other = PLANE_MOA[vol.rootRecord.moaCurrent ^ 1];
    // what the other plane still holds was never confirmed shipped: it goes too
    vol.mergeMarkOnAllocate(other, recording);
    vol.clearMarkOnAllocate(other);
    vol.swapMarkOnAllocate(); // the plane that recorded is shipped, the emptied one records
    vol.commit();
  }
  return top.name;
}

/** A source this process holds. */
export function localSource(vol: Volume): SourceAccess {
  return {
    volume: () => vol,
    prepare: async (p) => prepareSource(vol, p),
    hold: async () => vol, // this process holds the volume: nothing else changes it
    finish: async (p) => finishSource(vol, p),
    discard: async (name) => void vol.deleteSnapshot(name),
  };
}


/** The relationship's snapshots older than the transfer's top, which finishSource drops (none for a cascade: not its own). */
export function olderMirrorSnapshots(vol: Volume, p: FinishArgs): SnapshotEntry[] {
  if (p.cascade) return [];
  const prefix = `mirror.${p.tag}.`;
  return vol.snapshots().filter((s) => s.name.startsWith(prefix) && s.id < p.topId);
}

/**
 * After a transfer the destination holds: empty the shipped plane, drop the relationship's
 * older snapshots but those `keep` names (a served volume's readers pin them: the server
 * deletes them once they let go).
 */
export function finishSource(vol: Volume, p: FinishArgs, keep: (id: number) => boolean = () => false): void {
  // another update of this relationship swapped again since (a served volume: two updates
  // overlapping): its shipped plane now holds these marks too, and must keep them
  if (p.moaSwaps === undefined || p.moaSwaps === vol.rootRecord.moaSwaps) vol.clearMarkOnAllocate(PLANE_MOA[vol.rootRecord.moaCurrent ^ 1]);
  for (const s of olderMirrorSnapshots(vol, p)) if (!keep(s.id)) vol.dropSnapshotEntry(s.name);
  vol.commit();
}

