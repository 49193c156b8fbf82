// protect status: what a protection destination holds, read without its lock (a shipper
// may be appending): the source, the window, the recovery points, storage and snapshots.
import fs from 'node:fs';
import path from 'node:path';
import { Volume } from '../volume/volume.js';
import { BASE_FILE, INTERVALS_DIR, readState, windowOf, type ProtectState } from './destination-state.js';
import { intervalFileName } from './interval-file.js';
import { holdsWholeDisk, listPoints, namesAt, type PointInfo } from './recovery-point.js';
import { nameOfBaseSnapshot, namesOfInterval } from './snapshot-names.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { verifyDestination, type DestinationVerification } from './verify-destination.js';

export interface ProtectStatus {
  destination: string;
  source: { uuid: string; path: string; blockSize: number; logicalSize: number };
  keepMs: number;
  seeded: boolean;
  window: { start: string; end: string } | null;
  /** Recovery points: the base's, then one per interval held. */
  recoveryPoints: number;
  points: Array<{ seq: number; time: string; kind: 'base' | 'journal' | 'resync'; blocks: number; bytes: number; snapshots: string[]; damaged?: string; gapFrom?: string }>;
  /** Spans with no recovery point inside (before each resync: the writes then were not kept); restore refuses times inside them. */
  gaps: Array<{ from: string; to: string }>;
  /** Damaged or missing interval files: the recovery points from the first one on cannot be rebuilt. */
  damaged: string[];
  /**
   * A damaged interval retention found: folds hold before it (seq) until a full resync
   * after it (`resync`: its time, null while none has come: protect sends one when it
   * next runs with the volume served with --journal).
   */
  retentionHeld?: { seq: number; resync: string | null };
  /**
   * Blocks of the base's data that failed base.sums (a scrub found them): the recovery
   * points that read them cannot be rebuilt until a fold takes a full resync (`resync`:
   * its time, null while none has come: protect sends one when it next runs).
   */
  baseDamaged?: { resync: string | null };
  base: { seq: number; time: string | null; bytes: number; snapshots: string[] };
  intervals: { count: number; bytes: number };
  journalTo: number;
  /** A fold in progress or interrupted: intervals up to this seq go into the base. */
  foldingTo: number | null;
  /** pid of the shipper holding the destination, or null. */
  shipper: number | null;
  /** Set (for a destination on a peer daemon) when a shipper holds it through one of the daemon's sessions: its pid is on another machine. */
  shipperSession?: boolean;
  /** With --verify: what reading every block found (its damage is in `damaged` and on the points too). */
  verified?: DestinationVerification;
}

const iso = (ms: number) => new Date(ms).toISOString();

function allocatedBytes(file: string): number {
  try {
    return fs.statSync(file).blocks * 512;
  } catch {
    return 0;
  }
}

/** A resync after time passed: no recovery point between its start and its end. */
const isGap = (p: PointInfo) => p.kind === 'resync' && p.end > p.start;

/** The time of the first full resync (every block) after interval `seq`, or null. */
function wholeResyncAfter(s: ProtectState, held: PointInfo[], seq: number): string | null {
  const p = held.find((x) => x.seq > seq && !x.damaged && holdsWholeDisk(x, s));
  return p ? iso(p.end) : null;
}

export function protectStatus(dir: string): ProtectStatus {
  // a fold may delete interval files while they are listed: read again then
  for (let attempt = 0; ; attempt++) {
    const s = readState(dir);
    const list = listPoints(dir, s);
    if (list.unreadable && attempt < 3 && readState(dir).baseSeq !== s.baseSeq) continue;
    const held: PointInfo[] = list.points;
    const w = windowOf(s);
    const first = s.fold ? s.fold.to : s.baseSeq;
    const visible = held.filter((p) => p.seq > first);
    const baseFile = path.join(dir, BASE_FILE);
    let baseSnapshots: string[] = [];
    if (s.seeded) {
      try {
        const v = Volume.openView(baseFile);
        baseSnapshots = v.snapshots().sort((a, b) => a.id - b.id).map((x) => x.name);
        v.close();
      } catch {
        /* being replaced: listed next time */
      }
    }
    // by the names the source gives them now (renamed there since, perhaps)
    const names = namesAt(s, list, baseSnapshots);
    baseSnapshots = baseSnapshots.map((n) => nameOfBaseSnapshot(names, n) ?? n);
    const basePoint = { seq: first, time: w ? iso(w.start) : '', kind: 'base' as const, blocks: 0, bytes: 0, snapshots: [] as string[] };
    const points = s.seeded ? [basePoint, ...visible.map((p) => ({ seq: p.seq, time: iso(p.end), kind: p.kind, blocks: p.blocks, bytes: p.bytes, snapshots: namesOfInterval(names, p.seq), ...(p.damaged ? { damaged: p.damaged } : {}), ...(isGap(p) ? { gapFrom: iso(p.start) } : {}) }))] : [];
    return {
      destination: dir,
      source: s.source,
      keepMs: s.keepMs,
      seeded: s.seeded,
      window: w ? { start: iso(w.start), end: iso(w.end) } : null,
      recoveryPoints: points.length,
      points,
      gaps: s.seeded ? visible.filter(isGap).map((p) => ({ from: iso(p.start), to: iso(p.end) })) : [],
      base: { seq: s.baseSeq, time: s.seeded ? iso(s.baseTime) : null, bytes: allocatedBytes(baseFile), snapshots: baseSnapshots },
      intervals: { count: held.length, bytes: held.reduce((a, p) => a + p.bytes, 0) },
      damaged: [
        ...(s.seeded && !fs.existsSync(baseFile) ? [`${baseFile}: missing: the destination's base volume is gone`] : []),
        ...held.flatMap((p) => (p.damaged ? [p.damaged] : [])),
        ...(list.unreadable ? [list.unreadable.message] : []),
        // found by a fold (data damage a listing does not read), named as --verify names it
        ...(s.damage?.base ? [`${baseFile}: ${s.damage.what}`] : []),
        ...(s.damage && !s.damage.base ? [`${path.join(dir, INTERVALS_DIR, intervalFileName(s.damage.seq))}: ${s.damage.what}`].filter((d) => !held.some((p) => p.damaged === d)) : []),
      ],
      ...(s.damage && !s.damage.base ? { retentionHeld: { seq: s.damage.seq, resync: wholeResyncAfter(s, held, s.damage.seq) } } : {}),
      ...(s.damage?.base ? { baseDamaged: { resync: wholeResyncAfter(s, held, s.damage.seq) } } : {}),
      journalTo: s.journalTo,
      foldingTo: s.fold ? s.fold.to : null,
      shipper: VolumeLock.holder(dir)?.pid ?? null,
    };
  }
}

/**
 * protectStatus() after reading every block the destination holds (verify-destination.ts):
 * the damage found is added to `damaged` and to the points of the intervals it names.
 */
export async function verifiedProtectStatus(dir: string): Promise<ProtectStatus> {
  const verified = await verifyDestination(dir);
  const st = protectStatus(dir);
  for (const d of verified.damaged) {
    const p = st.points.find((x) => x.kind !== 'base' && d.startsWith(`${path.join(dir, INTERVALS_DIR, intervalFileName(x.seq))}:`));
    if (p) p.damaged ??= d;
  }
  // in the verification's order (the base, then the intervals oldest first); what status alone found, once
  return { ...st, damaged: [...new Set([...verified.damaged, ...st.damaged])], verified };
}
