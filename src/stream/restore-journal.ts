// What a restore into a volume with a write journal (a replica served with --journal, its
// server stopped) tells that journal, as an import does: the logical blocks the stream
// changes, before the CP that commits them (the journal tracks them as after an overflow,
// so protect resyncs just those instead of stopping at a disk changed without its
// journal), and the snapshots it brings, after that CP (their states are not the journal's
// to ship: the resync names them as not arriving). The blocks are those the new top's map
// sends elsewhere than the base's, found by walking the two trees where they differ; the
// new tree's nodes are read where the restore put them (written in place, or staged until
// the CP).
import { BlockSet } from '../core/block-set.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { forEachChangedLbn } from '../volume/map-diff.js';
import type { Volume } from '../volume/volume.js';
import type { StageFile } from './restore-stage.js';

/** Before the restore's CP: the blocks the active file system changes going from the last CP's state to snapshot `top` (installed, not yet made active). */
export function tellJournalChanges(vol: Volume, top: string, stage: StageFile, what: string): void {
  const observer = vol.observer;
  if (!observer?.blocksChanged) return;
  const next = vol.snapshots().find((s) => s.name === top);
  if (!next) return;
  const trees = {
    path: vol.path,
    blockSize: vol.blockSize,
    nblocks: vol.nblocks,
    readNode: (vbn: number, buf: Buffer) => {
      const off = stage.offsets.get(vbn);
      if (off !== undefined) stage.read(off, buf);
      else vol.readBlock(vbn, buf);
    },
  };
  const changed = new BlockSet();
  forEachChangedLbn(trees, vol.rootRecord.mapDepth, vol.rootRecord.mapRoot, next.mapRoot, (l) => changed.add(l));
  if (changed.size > 0) observer.blocksChanged(changed, what);
}

/** After the restore's CP: the snapshots it brought, oldest first. */
export function tellJournalSnapshots(vol: Volume, installed: SnapshotEntry[]): void {
  for (const e of installed) vol.observer?.snapshotTaken(e);
}
