// Which recorded dumps a snapshot is the base of next: a dump's top is the base a dump one
// level above it builds on until a newer dump at its level or below is taken, and of every
// level above that too, up to the lowest level of a newer dump (a level N builds on the
// newest dump below N: dump.ts). Deleting such a snapshot refuses those levels, so
// `snapshot delete` says so: the top of the newest level 0 refuses levels 1 to 9, not 1.
import { isSnapshotOf, type DumpRecord } from './catalog.js';

/** Of `records` (one volume's, in top order), the dumps whose top is `snap` and that the next dump one level above would build on. */
export function dumpsBuiltOnNext(records: DumpRecord[], snap: { id: number; generation: number; createdMs: number }): DumpRecord[] {
  return records.filter((r) => r.level < 9 && isSnapshotOf(r.top, snap) && !records.some((d) => d.top.id > r.top.id && d.level <= r.level));
}

/** The levels (1 to 9) a next dump of is refused once `snap` is deleted: those whose base, the newest of `records` (one volume's) below the level, has `snap` as its top. */
export function levelsBuiltOnNext(records: DumpRecord[], snap: { id: number; generation: number; createdMs: number }): number[] {
  const levels: number[] = [];
  for (let level = 1; level <= 9; level++) {
    const below = records.filter((d) => d.level < level);
    if (below.some((r) => isSnapshotOf(r.top, snap) && !below.some((d) => d.top.id > r.top.id))) levels.push(level);
  }
  return levels;
}
