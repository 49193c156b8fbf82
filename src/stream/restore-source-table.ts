// What a stream says of its source's snapshot table at its top, for a restore onto a
// volume that holds older snapshots: which of them the source had deleted (dropped here)
// and which are shadow ones there (made shadow ones here: their blocks may have been
// reused for the stream's).
import type { StreamHeader } from '../format/image-stream.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { Volume } from '../volume/volume.js';

/**
 * The volume's snapshots that the stream's source had deleted by the time of the dump (see
 * StreamHeader.retained): those before the base, and later ones that an earlier restore
 * brought from the source (a differential: level 1 after level 1, the one before deleted
 * by retention) and the source took before the stream's top. Later ones taken on this
 * volume are its own: never dropped.
 */
export function deletedAtSource(vol: Volume, h: StreamHeader): SnapshotEntry[] {
  if (!h.retained || h.base === null) return [];
  const keep = new Set([...h.retained.map((s) => s.id), ...h.snapshots.map((s) => s.id), h.base.id]);
  return vol.snapshots().filter((s) => !keep.has(s.id) && (s.id <= h.base!.id || (s.restored === true && s.id < h.top.id)));
}

/**
 * The volume's regular snapshots that are shadow ones at the stream's source (its base,
 * StreamHeader.base.shadow, and older ones, StreamHeader.retained): made shadow ones there
 * after they were dumped (snapshot shadow), their blocks may have been reused for the
 * stream's. The same snapshot: same id and generation.
 */
export function shadowsAtSource(vol: Volume, h: StreamHeader): SnapshotEntry[] {
  const shadows = (h.retained ?? []).filter((s) => s.shadow === true).map((s) => ({ id: s.id, generation: s.generation }));
  if (h.base?.shadow === true) shadows.push({ id: h.base.id, generation: h.base.generation });
  return vol.snapshots().filter((s) => !s.shadow && !s.master && shadows.some((x) => x.id === s.id && x.generation === s.generation));
}

/**
 * The volume's snapshots that the stream's source held under another name by its top
 * (renamed there since: StreamHeader.retained, its base and the snapshots it carries; the
 * same snapshot: same id and generation), with that name: the CP that installs the stream
 * renames them, so a rotation at the source (daily.0 renamed daily.1, a new daily.0 taken
 * and dumped) restores. Every other snapshot up to the top is dropped (deletedAtSource) or
 * refused, so the names end as unique as the source's.
 */
export function renamedAtSource(vol: Volume, h: StreamHeader): Array<{ id: number; from: string; to: string }> {
  const named = new Map<number, { name: string; generation: number }>();
  for (const r of h.retained ?? []) named.set(r.id, r);
  if (h.base !== null) named.set(h.base.id, h.base);
  for (const s of h.snapshots) named.set(s.id, s);
  return vol.snapshots().flatMap((s) => {
    const n = named.get(s.id);
    return n !== undefined && n.generation === s.generation && n.name !== s.name ? [{ id: s.id, from: s.name, to: n.name }] : [];
  });
}
