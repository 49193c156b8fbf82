// Which recovery point a restore --as-of means at a protection destination: a time (the
// last interval end at or before it, or the base's point) or the name of a snapshot an
// interval carries. A time outside the retained window is refused, naming the window.
import fs from 'node:fs';
import path from 'node:path';
import { AS_OF_DATE_FORMS, parseAsOfDate } from '../catalog/as-of.js';
import { CorruptError, InvalidInputError, NotFoundError } from '../core/errors.js';
import { INTERVALS_DIR, windowOf, type ProtectState } from './destination-state.js';
import { intervalFileName, readDamagedHeader, readIntervalHeader } from './interval-file.js';
import type { SnapshotRename } from './destination-api.js';
import { namesOfInterval, snapshotNames, type SnapshotNames } from './snapshot-names.js';

export interface RecoveryPoint {
  /** Apply the intervals after the base up to this seq (baseSeq: the base alone). */
  seq: number;
  /** The moment the disk is rebuilt as of (ms). */
  time: number;
  /** Snapshots the source took at that moment. */
  snapshots: string[];
  /** A source snapshot folded into the base (older than the window): the disk is that snapshot of the base. */
  baseSnapshot?: string;
}

/** One stored interval as status and restore see it. */
export interface PointInfo {
  seq: number;
  start: number;
  end: number;
  kind: 'journal' | 'resync';
  /** Snapshots the source took at its end, by the names they had then (snapshotNames() gives the names they answer to now). */
  snapshots: string[];
  /** Snapshots the source renamed in it. */
  renames?: SnapshotRename[];
  blocks: number;
  bytes: number;
  /** Why this interval cannot be read (its index is damaged): the recovery points from it on cannot be rebuilt. */
  damaged?: string;
}

/** The intervals held, and the error of the first one so damaged that even its time is unknown (the list stops before it). */
export interface HeldPoints {
  points: PointInfo[];
  unreadable: CorruptError | NotFoundError | null;
}

const iso = (ms: number) => new Date(ms).toISOString();

/**
 * True when an interval holds every block of the disk: a full resync (the journal was
 * trimmed past the destination's last record, or moved aside). The points from it on
 * need nothing older, so damage before it does not reach them.
 */
export function holdsWholeDisk(p: { kind: 'journal' | 'resync'; blocks: number }, s: Pick<ProtectState, 'source'>): boolean {
  return p.kind === 'resync' && p.blocks === Math.ceil(s.source.logicalSize / s.source.blockSize);
}

/** The seq of the newest interval up to `seq` that holds the whole disk (null: none), among `points`. */
export function wholeDiskBefore(points: PointInfo[], s: Pick<ProtectState, 'source'>, seq: number): number | null {
  let found: number | null = null;
  for (const p of points) if (p.seq <= seq && !p.damaged && holdsWholeDisk(p, s)) found = p.seq;
  return found;
}

/** What --as-of takes for the newest recovery point of a destination. */
export const LATEST = 'latest';

/**
 * The intervals held after the base, oldest first, their indexes checked unless `verify`
 * is false (a restore checks the indexes it reads). A damaged one
 * is listed with `damaged` when its header still gives its time; when even that is
 * unreadable (or the file is missing) the list stops there, with the error in `unreadable`.
 */
export function listPoints(dir: string, s: ProtectState, opts: { verify?: boolean } = {}): HeldPoints {
  const points: PointInfo[] = [];
  for (let seq = s.baseSeq + 1; seq <= s.intervalSeq; seq++) {
    const file = path.join(dir, INTERVALS_DIR, intervalFileName(seq));
    // (gone while listed: a fold deleted it; protectStatus reads the state again then)
    const missing = () => ({ points, unreadable: new CorruptError(`${file}: missing interval file (interval ${seq} of ${s.intervalSeq})`, 'the recovery points from this interval on cannot be rebuilt, up to a full resync after it, if any') });
    if (!fs.existsSync(file)) return missing();
    try {
      const h = readIntervalHeader(file, opts);
      points.push({ seq, start: h.start, end: h.end, kind: h.kind, snapshots: h.snapshots, ...renamesIn(h), blocks: h.blockCount, bytes: h.bytes });
    } catch (err) {
      if (err instanceof NotFoundError) return missing();
      if (!(err instanceof CorruptError)) throw err;
      const h = readDamagedHeader(file);
      if (!h) return { points, unreadable: err };
      points.push({ seq, start: h.start, end: h.end, kind: h.kind, snapshots: h.snapshots, ...renamesIn(h), blocks: h.blockCount, bytes: fs.statSync(file).size, damaged: err.message });
    }
  }
  return { points, unreadable: null };
}

const renamesIn = (h: { renames?: SnapshotRename[] }) => (h.renames?.length ? { renames: h.renames } : {});

/** The names the held points and the base's snapshots `baseNames` answer to now (a fold under way has applied the renames up to its progress). */
export function namesAt(s: ProtectState, held: HeldPoints, baseNames: string[]): SnapshotNames {
  return snapshotNames(baseNames, held.points, s.fold?.applied ?? s.baseSeq, s.baseRenamed);
}

/** The window as messages name it: "START to END" (ISO times). */
function describeWindow(s: ProtectState): string {
  const w = windowOf(s);
  return w ? `${iso(w.start)} to ${iso(w.end)}` : 'none (not seeded yet)';
}

/**
 * The recovery point `asOf` (a time, or the name of a snapshot an interval in the window
 * carries, by the name it has now: `names`, by default those of the intervals alone)
 * names at the destination. Names of the base's snapshots are the caller's (it holds the base).
 */
export function recoveryPointFor(dir: string, s: ProtectState, held: HeldPoints, asOf: string, names: SnapshotNames = namesAt(s, held, [])): RecoveryPoint {
  const points = held.points;
  const w = windowOf(s);
  if (!w) throw new NotFoundError(`${dir}: holds no recovery point yet (the first transfer has not completed)`);
  const first = s.fold ? s.fold.to : s.baseSeq;
  const usable = points.filter((p) => p.seq > first);
  const ref = names.current.get(asOf);
  const named = ref !== undefined && 'seq' in ref ? usable.find((p) => p.seq === ref.seq) : undefined;
  if (asOf === LATEST && named) {
    // a failover asking for the newest point must not get an older one silently
    throw new InvalidInputError(
      `"${LATEST}" names both the newest recovery point of ${dir} (${iso(w.end)}) and the source snapshot ${LATEST} (${iso(named.end)})`,
      `give the time of the one you want: --as-of ${iso(w.end)} or --as-of ${iso(named.end)}`,
    );
  }
  if (named) return { seq: named.seq, time: named.end, snapshots: namesOfInterval(names, named.seq) };
  // "latest": the newest recovery point, the window's end (a source snapshot of that name is taken above)
  const t = asOf === LATEST ? w.end : parseAsOfDate(asOf);
  const now = names.renamed.get(asOf);
  if (t === null && now !== undefined) {
    throw new InvalidInputError(`"${asOf}" names no recovery point of ${dir} any more: the source renamed that snapshot to ${now}`, `give its name now: --as-of ${now}`);
  }
  if (t === null) {
    // a name (a snapshot that is not there: not-found, as everywhere), or a time mistyped
    const Err = /^\d/.test(asOf) ? InvalidInputError : NotFoundError;
    throw new Err(`"${asOf}" is neither a time nor a snapshot of a recovery point of ${dir}`, `give a time in the window ${describeWindow(s)}, or ${LATEST} for its end; a time is ${AS_OF_DATE_FORMS}, as in 2026-12-03T10:15:02.250Z`);
  }
  if (t < w.start || t > w.end) {
    throw new InvalidInputError(`${asOf === iso(t) ? asOf : `${asOf} (${iso(t)})`} is outside the recovery window of ${dir}: ${describeWindow(s)}`, `list the recovery points with: imgstream protect status ${dir} --points`);
  }
  // past the last interval whose time is known, the point cannot be told
  if (held.unreadable && t > (points.at(-1)?.end ?? w.start)) throw held.unreadable;
  let point: RecoveryPoint = { seq: first, time: w.start, snapshots: [] };
  for (const p of usable) if (p.end <= t) point = { seq: p.seq, time: p.end, snapshots: namesOfInterval(names, p.seq) };
  // a resync carries one state at its end: the writes from its start up to then were not
  // kept (an outage, a journal that overflowed, protection shipped elsewhere meanwhile)
  const gap = usable.find((p) => p.kind === 'resync' && p.start < t && t < p.end);
  if (gap) {
    throw new InvalidInputError(
      `${asOf === iso(t) ? asOf : `${asOf} (${iso(t)})`} falls in a gap in the recovery points of ${dir}: the disk was not recorded from ${iso(gap.start)} to ${iso(gap.end)} (protection resynced there)`,
      `restore as of ${iso(gap.start)}, before it, or ${iso(gap.end)}, after it; every gap: imgstream protect status ${dir} --points`,
    );
  }
  return point;
}
