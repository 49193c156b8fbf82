// The source's snapshot renames, applied to the base's snapshots by a fold (fold.ts). The
// renames of one interval (a rotation: daily.1 → daily.2, daily.0 → daily.1) are worked
// out first, by snapshot id, into the name each base snapshot ends with and the ones to
// delete (an older snapshot holding a name the source gave another: it had deleted that
// one), and that plan is recorded in protect.json before the base changes. Carrying it
// out twice (a restart after a crash in the middle) ends the same: it goes by ids, and
// through names no source snapshot can have.
import type { Volume } from '../volume/volume.js';
import { crashPoint } from '../volume/crash-point.js';
import type { SnapshotRename } from './destination-api.js';
import { noteRename } from './snapshot-names.js';

/**
 * What the base's snapshots become: each id's final name, the ids to delete, the source's
 * time of each snapshot by its final name, and the old names (old → now, those recorded
 * before included).
 */
export interface BaseRenamePlan {
  names: Array<[id: number, name: string]>;
  drop: number[];
  times: Record<string, number>;
  renamed: Record<string, string>;
}

/** The plan for `renames` (in the order the source made them) over the base's snapshots now, whose times and old names `was` gives; null when they touch none. */
export function planBaseRenames(base: Volume, renames: SnapshotRename[], was: { times: Record<string, number>; renamed: Record<string, string> }): BaseRenamePlan | null {
  const { times } = was;
  const renamed = new Map(Object.entries(was.renamed));
  const byName = new Map(base.snapshots().map((x) => [x.name, x.id]));
  const before = new Map(base.snapshots().map((x) => [x.id, x.name]));
  let touched = false;
  for (const { from, to } of renames) {
    const id = byName.get(from);
    if (id === undefined || from === to) continue; // a snapshot that never reached the base, or made room for newer ones
    byName.delete(from);
    byName.set(to, id); // one there already is older, deleted on the source: it goes
    noteRename(renamed, from, to);
    touched = true;
  }
  if (!touched) return null;
  const kept = new Set(byName.values());
  const after: Record<string, number> = {};
  for (const [name, id] of byName) if (times[before.get(id)!] !== undefined) after[name] = times[before.get(id)!];
  return {
    names: [...byName].filter(([name, id]) => before.get(id) !== name).map(([name, id]) => [id, name]),
    drop: [...before.keys()].filter((id) => !kept.has(id)),
    times: after,
    renamed: Object.fromEntries([...renamed].filter(([, now]) => byName.has(now))),
  };
}

/** A name for a snapshot between its old and new name (no source snapshot's: names begin with a letter, digit or '_', never "_:"). */
const passing = (id: number) => `_:protect-fold:${id}`;

/** Carries out `plan` on the base (one CP per step). */
export function applyBaseRenames(base: Volume, plan: BaseRenamePlan): void {
  const nameOf = (id: number) => base.snapshots().find((x) => x.id === id)?.name;
  for (const id of plan.drop) {
    const name = nameOf(id);
    if (name !== undefined) base.deleteSnapshot(name);
  }
  // out of every name first, then into the new ones: a swap of two names needs it
  for (const [id, name] of plan.names) {
    const now = nameOf(id);
    if (now !== undefined && now !== name && now !== passing(id)) base.renameSnapshot(now, passing(id));
  }
  crashPoint('protect-fold-passing', base.path);
  for (const [id, name] of plan.names) if (nameOf(id) === passing(id)) base.renameSnapshot(passing(id), name);
}
