// What is wrong with a mirror state file's entries, field by field: a damaged state (an
// entry edited by hand, cut off, of another program) is refused in one line naming the
// entry and the field, before a command acts on it or saves it again (an update used to
// rewrite such a file keeping the damage, and status failed with an internal error).
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isText = (v: unknown): boolean => typeof v === 'string' && v !== '';
const isCount = (v: unknown): boolean => Number.isSafeInteger(v) && (v as number) >= 0;
const STATES = ['idle', 'transferring', 'failed', 'broken', 'stopped'];
const MODES = ['full', 'moa', 'common'];

function snapshotIdent(v: unknown, field: string): string | null {
  if (!isObject(v)) return `${field} is not a snapshot`;
  if (!isCount(v.id) || typeof v.name !== 'string' || !isCount(v.generation)) return `${field} is not a snapshot (id, name, generation)`;
  return null;
}

function relationshipProblem(r: unknown): string | null {
  if (!isObject(r)) return 'is not an object';
  if (!isText(r.key)) return 'key is not a text';
  if (!isObject(r.volume) || !isText(r.volume.uuid) || !isText(r.volume.path)) return 'volume is not a uuid and a path';
  if (!isText(r.destination)) return 'destination is not a text';
  if (!STATES.includes(r.state as string)) return `state is not one of ${STATES.join(', ')}`;
  if (r.lastSuccess !== null && r.lastSuccess !== undefined) {
    if (!isObject(r.lastSuccess)) return 'lastSuccess is not an object';
    const p = snapshotIdent(r.lastSuccess.top, 'lastSuccess.top');
    if (p) return p;
  }
  if (r.lastAttempt !== null && r.lastAttempt !== undefined && !isObject(r.lastAttempt)) return 'lastAttempt is not an object';
  if (r.pending !== null && r.pending !== undefined) {
    if (!isObject(r.pending) || !isText(r.pending.transferId) || !MODES.includes(r.pending.mode as string) || !isCount(r.pending.moaSwaps)) return 'pending is not a transfer (transferId, mode, moaSwaps)';
    const p = snapshotIdent(r.pending.top, 'pending.top');
    if (p) return p;
  }
  if (r.moa !== null && r.moa !== undefined) {
    if (!isObject(r.moa) || !isCount(r.moa.swaps)) return 'moa is not a snapshot and a swap count';
    const p = snapshotIdent(r.moa.top, 'moa.top');
    if (p) return p;
  }
  if (r.recent !== undefined && !(Array.isArray(r.recent) && r.recent.every((t) => isObject(t) && snapshotIdent(t.top, 'top') === null))) return 'recent is not a list of transfers';
  if (r.partial !== undefined && r.partial !== null && !(isObject(r.partial) && isCount(r.partial.bytes))) return 'partial is not a transfer\'s bytes';
  return null;
}

/** What is wrong with the state's entries ("relationship 2: volume is not a uuid and a path"), or null. */
export function stateProblem(s: { relationships?: unknown[]; moaOwner?: Record<string, unknown>; replicas?: Record<string, unknown> }): string | null {
  for (const [i, r] of (s.relationships ?? []).entries()) {
    const p = relationshipProblem(r);
    if (p) return `relationship ${i + 1} of ${s.relationships!.length}: ${p}`;
  }
  for (const [k, v] of Object.entries(s.moaOwner ?? {})) if (typeof v !== 'string') return `moaOwner "${k}" is not a relationship key`;
  for (const [k, v] of Object.entries(s.replicas ?? {})) {
    if (!Array.isArray(v) || !v.every((x) => isObject(x) && isText(x.replica) && snapshotIdent(x.top, 'top') === null)) return `replicas of ${k} is not a list of replicas`;
  }
  return null;
}
