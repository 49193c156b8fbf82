// A stream given to restore whose top snapshot the volume holds already (restore l0 l1
// l1, or l1 again onto the volume it was restored to): applying it again would at best
// change nothing and at worst take the volume back, discarding what came after it (a
// later stream, or writes to the active file system, which the stream's CP would reset
// to its top). So it is not applied: passed over when the volume is exactly at its top,
// or when a later stream of the same restore goes on from the volume (a chain restored
// again: its lower links are held); refused otherwise.
import { isSnapshotOf } from '../catalog/catalog.js';
import { InvalidInputError } from '../core/errors.js';
import type { StreamHeader } from '../format/image-stream.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { Volume } from '../volume/volume.js';

/** A stream passed over: the volume held its top snapshot already. */
export interface HeldStream {
  stream: string;
  /** As RestoredStream's: where it came among the streams read. */
  order: number;
  streamId: string;
  level: number;
  base: string | null;
  top: string;
}

/** True when nothing was written to the active file system since the volume's newest snapshot (a replica as its last restore left it). */
export function activeAsNewestSnapshot(vol: Volume): boolean {
  const newest = newestSnapshot(vol);
  return newest !== null && newest.mapRoot === vol.rootRecord.mapRoot;
}

/** The volume's newest snapshot (by id), or null when it has none. */
export function newestSnapshot(vol: Volume): SnapshotEntry | null {
  return vol.snapshots().reduce<SnapshotEntry | null>((a, s) => (a === null || s.id > a.id ? s : a), null);
}

/** A stream whose top snapshot the volume holds: passed over, unless `refusal` stands (see heldAlready). */
export interface HeldCandidate {
  held: Omit<HeldStream, 'order'>;
  /** Set when the volume went on since that snapshot: applying the stream would take it back. */
  refusal: InvalidInputError | null;
}

/**
 * Null when the volume does not hold the stream's top snapshot (apply it); else the stream,
 * to be passed over. When the volume is at that snapshot already (the newest, nothing
 * written since) that is all; when it went on since (a newer snapshot: a later stream was
 * restored, or one was taken on it; or writes to its active file system), `refusal` says
 * why applying it would take the volume back. The restore refuses it with that, unless a
 * later stream of the same restore is held or applied (a chain restored again, whose
 * lower links the volume holds: restore --from l0 --from l1 onto the volume it made).
 */
export function heldAlready(vol: Volume, h: StreamHeader, name: string, display: string): HeldCandidate | null {
  // by identity: the id, the CP that took it and when (a replica restored from the same volume
  // shares its ids, and one of its own snapshots may come at the same generation)
  const topEntry = h.snapshots[h.snapshots.length - 1];
  const top = vol.snapshots().find((s) => isSnapshotOf({ id: h.top.id, name: h.top.name, generation: h.top.generation, createdMs: topEntry.createdMs }, s));
  if (!top) return null;
  const stream: Omit<HeldStream, 'order'> = { stream: name, streamId: h.streamId, level: h.level, base: h.base?.name ?? null, top: h.top.name };
  const held = `${display} holds this stream's top snapshot "${top.name}" already`;
  const hint = 'restore each stream once, in chain order: only those after the newest snapshot the volume holds';
  const newest = newestSnapshot(vol)!;
  if (newest.id !== top.id) return { held: stream, refusal: new InvalidInputError(`${name}: ${held}, and the newer snapshot "${newest.name}": applying it again would take the volume back`, hint) };
  if (!activeAsNewestSnapshot(vol)) return { held: stream, refusal: new InvalidInputError(`${name}: ${held}, and data was written to it since: applying it again would discard those writes`, `${hint}; to go back to "${top.name}", restore into a new volume`) };
  return { held: stream, refusal: null };
}
