// A mirror or replica is brought forward, never back: a destination holding snapshots newer
// than the newest its source can send would lose them, and their data, as `zfs recv`
// without -F refuses to.
import { InvalidInputError } from '../core/errors.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { DestinationState } from './protocol.js';

/**
 * A replica is brought to the source's newest master, never back from a newer state: one
 * holding a snapshot newer than that master (the source deleted the master the replica
 * pulled last, with --force; or it is a mirror ahead of the masters) would lose it and its
 * data, as `zfs recv` without -F refuses to.
 */
export function refuseReplicaRollback(dest: DestinationState, master: SnapshotEntry, where: string): void {
  const newer = newerThan(dest, master);
  if (newer.length === 0) return;
  throw new InvalidInputError(
    `${where}: holds snapshot${newer.length > 1 ? 's' : ''} ${newer.map((d) => `"${d.name}"`).join(', ')}, newer than "${master.name}", the source's newest master: a pull would take it back to "${master.name}" and drop ${newer.length > 1 ? 'them' : 'it'}`,
    'take a newer master on the source (imgstream snapshot create VOL NAME --master) and pull again, or pull into another volume',
  );
}

/** The destination's snapshots newer than `top` (ids grow with every snapshot a volume and its copies take). */
function newerThan(dest: DestinationState, top: SnapshotEntry): DestinationState['snapshots'] {
  return dest.exists ? dest.snapshots.filter((d) => d.id > top.id) : [];
}

/**
 * An update brings a mirror forward, never back: one holding snapshots newer than this
 * update's top was fed since from a source further on (a cascade's hop bypassed while it
 * was down, then back; a copy of the source that fell behind), and would lose them and
 * their data, with exit 0, as `zfs recv` without -F refuses to. (A resync takes a mirror
 * to the source's state whatever it holds: that is what it is for.)
 */
export function refuseMirrorRollback(dest: DestinationState, top: SnapshotEntry, source: string, where: string): void {
  const newer = newerThan(dest, top);
  if (newer.length === 0) return;
  const names = newer.map((d) => `"${d.name}"`).join(', ');
  throw new InvalidInputError(
    `${where}: holds snapshot${newer.length > 1 ? 's' : ''} ${names}, newer than "${top.name}", the newest ${source} can send: it was updated since from a volume further on, and this update would take it back and drop ${newer.length > 1 ? 'them' : 'it'}`,
    `bring ${source} up to date first (update it from the volume that holds ${names}), then update again; or mirror ${source} to another name`,
  );
}
