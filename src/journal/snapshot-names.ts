// The names a protection destination's recovery points answer to. A snapshot taken on the
// source arrives with the interval it ends; a rename on the source arrives with the
// interval its record falls in (the interval file's `renames`), and a fold applies it to
// the base's snapshot. Interval files are never rewritten: the current names are worked
// out from the base's snapshots and the renames and snapshots of the intervals after it,
// oldest first. A name taken again (a newer snapshot, or a rename onto it) names the newer
// point; an old name no longer in use is remembered, to say what it became.
import type { SnapshotRename } from './destination-api.js';

/** What a name answers to: the end of interval `seq`, or the base's snapshot that the base holds as `base`. */
export type NamedPoint = { seq: number } | { base: string };

export interface SnapshotNames {
  /** Each name in use → its point. */
  current: Map<string, NamedPoint>;
  /** A name the source gave up by renaming → the name that point has now. */
  renamed: Map<string, string>;
}

/** An interval as names see it: the snapshots taken at its end, and the renames made in it before them. */
export interface NamedInterval {
  seq: number;
  snapshots: string[];
  renames?: SnapshotRename[];
}

/**
 * The names in use, from the base's snapshot names and the intervals after the base
 * (ascending seq). Intervals up to `inBase` are in the base already, their snapshots and
 * renames included (a fold under way applied them): they are passed over. `baseRenamed`:
 * the old names of base snapshots (old → now) that folds recorded.
 */
export function snapshotNames(baseNames: string[], intervals: NamedInterval[], inBase = 0, baseRenamed: Record<string, string> = {}): SnapshotNames {
  const current = new Map<string, NamedPoint>(baseNames.map((n) => [n, { base: n }]));
  // the old names of the base's snapshots, renamed by folds before
  const renamed = new Map<string, string>(Object.entries(baseRenamed).filter(([old, now]) => current.has(now) && !current.has(old)));
  for (const iv of intervals) {
    if (iv.seq <= inBase) continue;
    for (const r of iv.renames ?? []) applyRename(current, renamed, r);
    for (const n of iv.snapshots) {
      current.set(n, { seq: iv.seq });
      renamed.delete(n);
    }
  }
  return { current, renamed };
}

/** One rename: a name that names nothing here (a snapshot that never arrived) changes nothing. */
function applyRename(current: Map<string, NamedPoint>, renamed: Map<string, string>, { from, to }: SnapshotRename): void {
  const point = current.get(from);
  if (point === undefined || from === to) return;
  current.delete(from);
  current.set(to, point);
  noteRename(renamed, from, to);
}

/** Records in `renamed` (old name → name now) that `from` became `to`. */
export function noteRename(renamed: Map<string, string>, from: string, to: string): void {
  for (const [old, now] of renamed) if (now === from) renamed.set(old, to);
  renamed.set(from, to);
  renamed.delete(to);
}

/** The names interval `seq`'s point answers to now. */
export function namesOfInterval(names: SnapshotNames, seq: number): string[] {
  const out: string[] = [];
  for (const [n, p] of names.current) if ('seq' in p && p.seq === seq) out.push(n);
  return out;
}

/** The name the base's snapshot `held` (as the base holds it) answers to now, or null when a newer point took it. */
export function nameOfBaseSnapshot(names: SnapshotNames, held: string): string | null {
  for (const [n, p] of names.current) if ('base' in p && p.base === held) return n;
  return null;
}
