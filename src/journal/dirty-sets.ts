// The dirty sets a write journal's overflow and resync points make (journal-writer.ts): the
// blocks changed without records since a destination's last record, gathered from the set
// saved before (dirty.json and dirty.bits), the one being tracked, and the records since.
import { BlockSet } from '../core/block-set.js';
import { renamesInOrder, type DirtySet } from './journal-files.js';
import { savedDirtyBlocks, type Dirty } from './dirty-blocks.js';
import type { JournalChanges } from './journal-reader.js';

interface Sources {
  dir: string;
  logicalBlocks: number;
  report: (m: string) => void;
  /** The set saved before (null: none). */
  prev: DirtySet | null;
  /** What the records after the point the set starts from changed. */
  since: JournalChanges;
  /** The destination's last record (the set starts after it when none was saved). */
  shipped: number;
}

/** An overflow's set: the saved one, and what the records a destination lacks changed (`reason`: what changed blocks without records, when not the journal outgrowing its limit). */
export function overflowDirty(s: Sources, reason?: string): Dirty {
  const { blocks, whole } = savedDirtyBlocks(s.dir, s.prev, s.logicalBlocks, s.report);
  blocks.addAll(s.since.blocks);
  const snapshots = new Set<string>([...(s.prev?.snapshots ?? []), ...s.since.snapshots]);
  const why = reason ?? s.prev?.reason;
  return { after: s.prev?.after ?? s.shipped, blocks, snapshots: [...snapshots], renames: renamesInOrder([...(s.prev?.renames ?? []), ...s.since.renames]), ...(why ? { reason: why } : {}), whole };
}

/** A resync point's set: the saved one, the one being tracked (`tracking`), and what the records since the saved one (or the destination's last) changed. */
export function resyncDirty(s: Sources, tracking: Dirty | null): Dirty {
  const { blocks, whole } = savedDirtyBlocks(s.dir, s.prev, s.logicalBlocks, s.report);
  if (tracking) blocks.addAll(tracking.blocks);
  blocks.addAll(s.since.blocks);
  const snapshots = new Set<string>([...(s.prev?.snapshots ?? []), ...(tracking?.snapshots ?? []), ...s.since.snapshots]);
  const renames = [...(s.prev?.renames ?? []), ...(tracking?.renames ?? []), ...s.since.renames];
  const reason = tracking?.reason ?? s.prev?.reason;
  return { after: s.prev?.after ?? s.shipped, blocks, snapshots: [...snapshots], renames: renamesInOrder(renames), ...(reason ? { reason } : {}), whole };
}

/** Every block of the disk, after record `after`: a journal that lost records a destination holds. */
export function wholeDiskDirty(after: number, logicalBlocks: number, reason: string): Dirty {
  const blocks = new BlockSet();
  blocks.addRange(0, logicalBlocks);
  return { after, blocks, snapshots: [], renames: [], reason, whole: true };
}
