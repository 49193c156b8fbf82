// dump of a volume whoever holds it. Opened here: as always (dumpVolume). Served: the
// dump plans from a lockless view of the volume (its snapshot table and the catalog),
// asks the server to take its snapshot when none is given, pins every snapshot it reads,
// reads their planes and blocks through the view, and checks before the trailer that no
// shadow snapshot among them had blocks reused meanwhile. The catalog is written here, as
// always. A dump killed at any point leaves no pin: pins end with its control connection.
import { NotFoundError } from '../core/errors.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { noProgress, type Progress } from '../core/progress.js';
import { openVolumeAccess } from '../control/access.js';
import { replayIdleJournal } from '../journal/idle-journal.js';
import type { Volume } from '../volume/volume.js';
import { dumpVolume, type DumpOptions, type DumpResult, type DumpTargetFactory } from './dump.js';

export async function dumpVolumeAt(path: string, target: DumpTargetFactory, opts: DumpOptions, progress: Progress = noProgress): Promise<DumpResult> {
  const write = !opts.dryRun && opts.snapshot === undefined;
  const access = await openVolumeAccess(path, { write, keepsDisk: true }); // it takes its snapshot at most
  if (access.kind === 'local') {
    try {
      if (write) replayIdleJournal(access.volume); // its snapshot holds the writes a killed server acknowledged
      return await dumpVolume(access.volume, target, opts, progress);
    } finally {
      access.close();
    }
  }
  const served = access;
  let view: Volume | null = null;
  let held: SnapshotEntry[] = [];
  /** The snapshot the server took for this dump, pinned when taken. */
  let taken: string | null = null;
  const refresh = async (): Promise<Volume> => {
    view?.close();
    view = null;
    view = served.openView();
    return view;
  };
  try {
    view = served.openView();
    return await dumpVolume(view, target, opts, progress, {
      takeSnapshot: async (name) => {
        await served.createSnapshot(name, { pin: true });
        taken = name;
        return refresh();
      },
      refresh,
      evaluate: (expression) => served.image(expression),
      hold: async (snapshots) => {
        const names = snapshots.map((s) => s.name);
        let pinned: SnapshotEntry[];
        try {
          pinned = await served.pin(names); // all, or none when one does not exist
        } catch (err) {
          if (err instanceof NotFoundError) return false; // deleted since the view was read
          throw err;
        }
        // the view was read before the pin: the same snapshot must still have that name
        if (snapshots.every((s) => pinned.some((p) => p.id === s.id))) {
          held = snapshots;
          return true;
        }
        await served.unpin(names.filter((n) => n !== taken)); // the dump's own snapshot stays pinned
        return false;
      },
      verify: () => served.verifyUnchanged(held),
      dropSnapshot: async (name) => {
        // pinned by this connection (taken with pin, and held): unpinned first
        held = held.filter((s) => s.name !== name);
        await served.unpin([name]);
        // another dump may be reading it (a level sums every snapshot since its base): it
        // goes when that one ends
        await served.deleteSnapshotWhenUnpinned(name);
      },
    });
  } finally {
    view?.close();
    if (held.length) await served.unpin(held.map((s) => s.name)).catch(() => {});
    served.close();
  }
}
