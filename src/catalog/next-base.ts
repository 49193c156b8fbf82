// Which recorded dumps a snapshot is the base of next: a dump's top is the base a dump one
// level above it builds on until a newer dump at its level or below is taken. Deleting
// such a snapshot refuses that level (dump.ts), so `snapshot delete` says so.
import { isSnapshotOf, type DumpRecord } from './catalog.js';

/** Of `records` (one volume's, in top order), the dumps whose top is `snap` and that the next dump one level above would build on. */
export function dumpsBuiltOnNext(records: DumpRecord[], snap: { id: number; generation: number; createdMs: number }): DumpRecord[] {
  return records.filter((r) => r.level < 9 && isSnapshotOf(r.top, snap) && !records.some((d) => d.top.id > r.top.id && d.level <= r.level));
}
