// The snapshots a journaling server takes for protect itself (the state a seed or a resync
// reads, pinned for that transfer and deleted after it): never told to the journal, so a
// destination never gets them as snapshots of the source. Recognised by their names, so a
// journal's recovery does not take one for a snapshot whose record a crash cut off.

/** The name of a snapshot a seed or a resync reads (`what`), taken for control session `session`. */
export function internalSnapshotName(what: 'seed' | 'resync', session: number): string {
  return `protect-${what}-${Date.now()}-${session}`;
}

/** True for a name internalSnapshotName gives. */
export function isInternalSnapshotName(name: string): boolean {
  return /^protect-(seed|resync)-\d+-\d+$/.test(name);
}
