// Whether a stream can go onto an existing volume: the same volume (uuid) and geometry,
// its base snapshot there (by identity) with nothing written since the newest snapshot,
// or its top there already (held: restore-held.ts).
// Checked before any block of the stream is written.
import { ExistsError, InvalidInputError, NotFoundError } from '../core/errors.js';
import type { StreamHeader } from '../format/image-stream.js';
import type { Volume } from '../volume/volume.js';
import { isSnapshotOf } from '../catalog/catalog.js';
import { activeAsNewestSnapshot, heldAlready, newestSnapshot, type HeldCandidate } from './restore-held.js';

/**
 * Refuses a stream that cannot go onto this volume, before any block is written; returns
 * the stream when the volume holds its top snapshot already (not to be applied again; see
 * restore-held.ts).
 */
export function checkFits(vol: Volume, h: StreamHeader, name: string, display: string, createdHere = false): HeldCandidate | null {
  const r = vol.rootRecord;
  if (h.volume.uuid !== r.uuid) {
    // a volume this restore made from the chain's level 0: the chain mixes two volumes' streams
    const hint = createdHere ? "give one volume's chain: this stream is not of the level 0 given before it" : 'restore it into a new volume, or pick the streams of this volume';
    throw new InvalidInputError(`${name}: stream is of another volume (${h.volume.uuid}), not ${display} (${r.uuid})`, hint);
  }
  if (h.volume.blockSize !== r.blockSize || h.volume.nblocks !== r.nblocks || h.volume.logicalSize !== r.logicalSize) {
    throw new InvalidInputError(`${name}: stream geometry (block size ${h.volume.blockSize}, ${h.volume.nblocks} blocks) differs from ${display} (block size ${r.blockSize}, ${r.nblocks} blocks)`);
  }
  if (h.base === null) {
    // a second full stream in the chain given (the first one made the volume), or a volume there already
    if (createdHere) throw new InvalidInputError(`${name}: a second level ${h.level} full stream in the chain: a chain has one, first`, 'give one chain: its level 0, then the incrementals in order');
    // the volume a restore of this chain made (a retry: restore --from l0 --from l1 again)
    const held = heldAlready(vol, h, name, display);
    if (held) return held;
    throw new ExistsError(`${name}: a level ${h.level} full stream restores only into a new volume, and ${display} exists`, 'give --to a path that does not exist yet');
  }
  // given twice, or onto the volume it was restored to: applying it again would change nothing, or take the volume back
  const held = heldAlready(vol, h, name, display);
  if (held) return held;
  // the base is known by identity (its id and the CP that took it), not by name: a snapshot
  // renamed on the source after its dump, or here since, is still the base (verify agrees)
  const base = vol.snapshots().find((s) => s.id === h.base!.id);
  if (base && base.generation === h.base.generation && !isSnapshotOf(h.base, base)) throw anotherCopys(name, `its base snapshot "${h.base.name}"`, h.base.createdMs!, `${display} holds one`, base.createdMs);
  if (!base || base.generation !== h.base.generation) {
    // a volume that went on since its newest snapshot (written to, or a newer snapshot of it
    // deleted) takes no stream in place: the lower levels would be refused the same way
    const newest = newestSnapshot(vol);
    if (newest !== null && newest.id < h.base.id && !activeAsNewestSnapshot(vol)) {
      throw new InvalidInputError(
        `${name}: its base snapshot "${h.base.name}" is not on ${display}, which changed since its newest snapshot "${newest.name}" (written to, or a newer snapshot deleted): a chain cannot go on in place`,
        'restore the chain into a new volume: imgstream restore --to NEW, with its streams or --as-of',
      );
    }
    throw new NotFoundError(`${name}: its base snapshot "${h.base.name}" is not on ${display}`, 'restore the lower-level streams of the chain first, in order');
  }
  // the stream's CP resets the active file system to its top: whatever the volume's active
  // file system holds beyond its newest snapshot would be gone, whether or not a block of
  // the stream lands on it (a quiet night's level 1 brings none)
  if (!activeAsNewestSnapshot(vol)) {
    const newest = newestSnapshot(vol)!; // the base is one
    throw new InvalidInputError(
      `${name}: ${display} changed since its newest snapshot "${newest.name}" (written to, or a newer snapshot deleted): the stream would discard that`,
      `restore the chain into a new volume: imgstream restore --to NEW, with its streams or --as-of; to keep what ${display} holds now, export it first: imgstream volume export ${display} --to FILE`,
    );
  }
  return null;
}

/**
 * Two snapshots with one id and generation but taken at different times: a replica restored
 * from a volume shares its uuid and snapshot ids, and one of its own may come at the same
 * CP generation as the source's. Their blocks differ: a stream of one does not go onto the other.
 */
export function anotherCopys(name: string, what: string, streamMs: number, other: string, otherMs: number): InvalidInputError {
  return new InvalidInputError(
    `${name}: ${what} was taken at ${new Date(streamMs).toISOString()}, and ${other} taken at ${new Date(otherMs).toISOString()} with the same id: they are two copies' snapshots (a replica restored from a volume shares its snapshot ids)`,
    "give one copy's streams in chain order: those dumped from the volume the others came from",
  );
}
