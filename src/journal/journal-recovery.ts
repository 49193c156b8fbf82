// What a write journal holds when a server opens it again, after a clean stop or a crash
// (journal-writer.ts acts on it): where it ends (the last intact record), a torn last
// record cut off (only what a write cut short by a crash leaves; anything else is damage,
// refused, never cut off in silence), the changes after the last CP marker (acknowledged
// writes the volume may lack: replayed), whether it had overflowed, and a volume whose
// disk changed without its journal since (refused: a destination would miss the change).
import { mapRootCrc } from './map-root-crc.js';
import fs from 'node:fs';
import { CorruptError, InvalidInputError } from '../core/errors.js';
import type { Volume } from '../volume/volume.js';
import { readLogicalBytes, writeLogicalBytes, zeroLogicalBytes } from '../volume/logical-io.js';
import type { SegmentFile } from './journal-files.js';
import { JournalReader, lastRecordOf, tornTail } from './journal-reader.js';
import { parseMarker, RecordKind, type JournalRecord } from './record.js';
import { isInternalSnapshotName } from './internal-snapshots.js';
import { MARK_BYTES } from './unshipped-bytes.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';

export const DAMAGED_HINT = 'serve without --journal; to protect again, move the journal directory aside and protect to a new destination';

export interface JournalScan {
  /** Sequence number of the last intact record (the first segment's first, less one, when none is). */
  lastSeq: number;
  /** The segment writing goes on in: the last one. */
  lastSegment: SegmentFile;
  /** Bytes of a torn last record cut off. */
  tornBytes: number;
  /** The DATA and ZERO records after the last CP marker (payloads copied), oldest first. */
  tail: JournalRecord[];
  /** The snapshot renames recorded after the last CP marker, oldest first (the CP that commits each may not have happened). */
  renames: Array<{ from: string; to: string }>;
  /** An OVERFLOW marker with no RESYNC after it: changes are tracked as dirty blocks. */
  overflowed: boolean;
  /** The generations the CP and OPEN markers recorded, and the snapshots recorded (under the names later renames gave them), in journal order (`at`: the record's seq). */
  markers: Array<{ at: number; generation: number; time: number }>;
  snapshots: Array<{ at: number; name: string }>;
  /** Marks for counting unshipped bytes (unshipped-bytes.ts): [seq, bytes of the segments through record seq] at each CP marker and every MARK_BYTES, the first the floor. */
  byteMarks: Array<[number, number]>;
}

/**
 * Reads the journal `dir` of `vol` (its segments `segs`, at least one) to its end and cuts
 * a torn tail off. `tracked`: a saved dirty set (dirty.json) holds the blocks changed
 * without records (an overflow, whose record went with the segments it dropped).
 */
export function scanJournal(dir: string, segs: SegmentFile[], vol: Volume, tracked = false): JournalScan {
  const tail: JournalRecord[] = [];
  const renames: Array<{ from: string; to: string }> = [];
  let overflowedAt = -1;
  let known: { generation?: number; mapRoot?: number; rootCrc?: number } | null = null; // what the last CP or OPEN marker recorded of the volume
  const markers: JournalScan['markers'] = [];
  const snapshots: JournalScan['snapshots'] = [];
  let lastSeq = 0;
  const r = new JournalReader(dir, segs[0].firstSeq);
  let lastEnd = 0;
  let lastSeg = segs[0].path;
  /** Bytes of the segments before the one being read. */
  let before = 0;
  const byteMarks: Array<[number, number]> = [[segs[0].firstSeq - 1, 0]];
  try {
    for (let rec = r.next(); rec !== null; rec = r.next()) {
      lastSeq = rec.seq;
      if (rec.segment !== lastSeg) before += lastEnd;
      lastSeg = rec.segment;
      lastEnd = rec.payloadAt + rec.payloadBytes;
      const through = before + lastEnd;
      if (rec.kind === RecordKind.Cp || rec.kind === RecordKind.Open || through - byteMarks[byteMarks.length - 1][1] >= MARK_BYTES) byteMarks.push([rec.seq, through]);
      if (rec.kind === RecordKind.Cp || rec.kind === RecordKind.Open) {
        known = parseMarker<{ generation?: number; mapRoot?: number; rootCrc?: number }>(rec);
        if (known.generation !== undefined) markers.push({ at: rec.seq, generation: known.generation, time: rec.time });
      } else if (rec.kind === RecordKind.Snapshot) snapshots.push({ at: rec.seq, name: parseMarker<{ name: string }>(rec).name });
      if (rec.kind === RecordKind.Cp) tail.length = renames.length = 0;
      else if (rec.kind === RecordKind.Rename) {
        const rn = parseMarker<{ from: string; to: string }>(rec);
        renames.push(rn);
        // the snapshot recorded under the old name is on the volume under the new one: recorded, not one a crash kept out (unrecordedSnapshots)
        for (let i = snapshots.length - 1; i >= 0; i--) {
          if (snapshots[i].name !== rn.from) continue;
          snapshots[i].name = rn.to;
          break;
        }
      }
      else if (rec.kind === RecordKind.Data || rec.kind === RecordKind.Zero) tail.push({ ...rec, payload: Buffer.from(rec.payload) });
      else if (rec.kind === RecordKind.Overflow) overflowedAt = rec.seq;
      else if (rec.kind === RecordKind.Resync) overflowedAt = -1;
    }
  } finally {
    r.close();
  }
  if (lastSeq === 0) lastSeq = segs[0].firstSeq - 1;
  const last = segs[segs.length - 1];
  if (lastSeg !== last.path && fs.statSync(last.path).size > 0) {
    throw new CorruptError(`${last.path}: the journal's last segment holds no intact record`, DAMAGED_HINT);
  }
  if (lastSeg !== last.path) lastEnd = 0;
  const size = fs.statSync(last.path).size;
  if (size > lastEnd && !tornTail(last.path, lastEnd, size)) {
    throw new CorruptError(`${last.path}: a damaged record at byte ${lastEnd}, with ${size - lastEnd} bytes after it`, DAMAGED_HINT);
  }
  // the volume committed a CP the journal has no marker of: only a crash between that CP
  // and its marker does this, and then the journal holds every change the CP committed (it
  // is synced before each CP), so its tail already reads back from the volume. A tail the
  // volume holds newer data for is a journal cut short or short of records: replaying it
  // would take the volume back, so it is refused before anything (a torn tail included) is cut
  if (tail.length > 0 && (known?.generation === undefined || known.generation < vol.rootRecord.generation) && !tailIsOnVolume(vol, tail)) {
    throw new CorruptError(
      `${dir}: the journal lacks changes the volume committed (its last CP marker is of generation ${known?.generation ?? 'none'}, the volume is at ${vol.rootRecord.generation}, and its last records are older than what the volume holds): it was cut short or lost records`,
      DAMAGED_HINT,
    );
  }
  let tornBytes = 0;
  if (size > lastEnd) {
    tornBytes = size - lastEnd;
    fs.truncateSync(last.path, lastEnd);
  }
  // the disk changed since without the journal (served without --journal, imported into): a destination would
  // never see it. Its map root tells (snapshots alone leave it as it was); after a crash the tail replays instead,
  // and while overflowed the dirty set holds what changed (saved before each CP)
  // (and its root block: a freed VBN is reused, so a new root can land on the one the marker names)
  const root = vol.rootRecord.mapRoot;
  const seen = known;
  const changed = seen?.mapRoot !== undefined && (root !== seen.mapRoot || (seen.rootCrc !== undefined && root !== 0 && mapRootCrc((b) => vol.readBlock(root, b), vol.blockSize) !== seen.rootCrc));
  if (tail.length === 0 && overflowedAt < 0 && !tracked && changed && known !== null) {
    throw new InvalidInputError(
      `${vol.path}: its disk changed without its journal since the journal's last record (at generation ${known.generation}, now ${vol.rootRecord.generation}), or the journal lost its last records (cut short, or restored from an older copy): its protection destination would miss that change`,
      `start protection over: move ${dir} aside, serve with --journal and protect to a new destination`,
    );
  }
  return { lastSeq, lastSegment: last, tornBytes, tail, renames, overflowed: overflowedAt >= 0, markers, snapshots, byteMarks };
}

/** Whether each block the tail changes reads from the volume as the tail's last change of it left it. */
function tailIsOnVolume(vol: Volume, tail: JournalRecord[]): boolean {
  const bs = vol.blockSize;
  const lastOf = new Map<number, Buffer | null>(); // null: zeros
  for (const rec of tail) {
    for (let i = 0; i < rec.count; i++) lastOf.set(rec.lbn + i, rec.kind === RecordKind.Data ? rec.payload.subarray(i * bs, (i + 1) * bs) : null);
  }
  const buf = Buffer.allocUnsafe(bs);
  for (const [lbn, want] of lastOf) {
    readLogicalBytes(vol, vol.map, lbn * bs, buf);
    if (want === null ? buf.some((b) => b !== 0) : !buf.equals(want)) return false;
  }
  return true;
}

/**
 * The journal's last record, and the damage after it in the last segment when there is
 * some: bytes that are more than one record cut short by a crash (readers stop at such a
 * place as at a tail still being written, and would take the journal for a shorter one).
 */
export function lastRecordAndDamage(dir: string): { last: number; damage: { segment: string; offset: number; bytes: number } | null } {
  let stop: { segment: string; offset: number } | null = null;
  const last = lastRecordOf(dir, (at) => (stop = at));
  const at = stop as { segment: string; offset: number } | null;
  if (at === null) return { last, damage: null };
  let size = 0;
  try {
    size = fs.statSync(at.segment).size;
  } catch {
    return { last, damage: null }; // trimmed meanwhile
  }
  return { last, damage: size > at.offset && !tornTail(at.segment, at.offset, size) ? { ...at, bytes: size - at.offset } : null };
}

/**
 * The snapshots a crash kept out of the journal: a process stopped between a snapshot's
 * CPs and its record (nothing comes in between: no write is taken meanwhile), or a
 * snapshot taken while its journal was not open. Taken on this volume after the journal's
 * first marker (so the journal covers that time: its generation and its creation time no
 * earlier than the marker's), a snapshot of generation G has its record after the first
 * marker of generation G or later (its own CP's); when none is there, its state is the
 * disk's as the journal ends (its tail replayed), so a record of it appended now gives
 * destinations exactly that snapshot. Oldest first. Left out: the snapshots protect takes
 * for itself (not the source's), and those a restore or a mirror transfer brought (their
 * generations are their source volume's, and they were created before they came here).
 */
export function unrecordedSnapshots(vol: Volume, scan: Pick<JournalScan, 'markers' | 'snapshots'>): SnapshotEntry[] {
  if (scan.markers.length === 0) return [];
  const first = scan.markers[0];
  return vol
    .snapshots()
    .filter((s) => {
      if (s.restored === true || isInternalSnapshotName(s.name)) return false;
      if (s.generation < first.generation || s.createdMs < first.time) return false;
      const from = scan.markers.find((m) => m.generation >= s.generation)?.at ?? Infinity;
      return !scan.snapshots.some((r) => r.name === s.name && r.at > from);
    })
    .sort((a, b) => a.id - b.id);
}

/**
 * Applies the records after the last CP marker (`tail`) to the volume again and commits
 * them, then makes the renames recorded but cut off before their CP; returns the records
 * applied. A rename whose CP did happen finds its new name taken and its old one gone.
 */
export function replayTail(vol: Volume, tail: JournalRecord[], renames: Array<{ from: string; to: string }>): number {
  const bs = vol.blockSize;
  for (const rec of tail) {
    if (rec.kind === RecordKind.Data) writeLogicalBytes(vol, rec.lbn * bs, rec.payload);
    else zeroLogicalBytes(vol, rec.lbn * bs, rec.count * bs);
  }
  if (vol.hasUncommittedChanges) vol.commit();
  // as its record (perhaps already at a destination) says
  const names = () => new Set(vol.snapshots().map((x) => x.name));
  for (const { from, to } of renames) if (names().has(from) && !names().has(to)) vol.renameSnapshot(from, to);
  return tail.length;
}
