// Copies of one volume in the catalog: a replica restored from a volume's dumps keeps the
// volume's uuid and takes its next snapshot ids again, so the catalog tells the records of
// one copy from another's by the path each was dumped from. A recorded path that still holds
// a volume of that uuid, other than the one asked about, is another copy (its dumps take no
// part in this one's levels or chains, but for dumps of snapshots both hold); a path that is gone, or holds another volume now, is
// where this one was before it moved. Records without a path (catalog rebuild) count as this
// one's.
import path from 'node:path';
import type { DumpRecord } from './catalog.js';

/** Reads the uuid of the volume at a path, or null when there is none (or it does not open). */
export type UuidAt = (p: string) => string | null;

/** The recorded paths among `records` (one uuid) that hold a volume of that uuid now. */
export function liveCopies(records: DumpRecord[], uuidAt: UuidAt): string[] {
  const paths = [...new Set(records.map((d) => d.volume.path).filter((p): p is string => p !== null))];
  return paths.filter((p) => {
    const now = uuidAt(p);
    return now !== null && records.some((d) => d.volume.path === p && d.volume.uuid === now);
  });
}

/**
 * The records that belong to the copy at `here` (its path): those of other live copies are
 * left out, but for dumps of snapshots this copy holds too (`holds`: the same snapshot by
 * identity, as a replica holds those restored from its source's dumps, a chain it can build on).
 */
export function ownRecords(records: DumpRecord[], here: string, uuidAt: UuidAt, holds: (d: DumpRecord) => boolean): DumpRecord[] {
  const abs = path.resolve(here);
  const others = new Set(liveCopies(records, uuidAt).filter((p) => p !== abs));
  return records.filter((d) => d.volume.path === null || !others.has(d.volume.path) || holds(d));
}
