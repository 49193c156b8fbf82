// `protect status VOLUME`: the source's side of continuous protection, read without the
// journal's lock (a shipper and a server may be at work): how much journal the volume
// keeps, how far a destination has acknowledged it (shipped.json), and the lag, the age
// of the oldest record written after that point.
import fs from 'node:fs';
import { InvalidInputError, NotFoundError } from '../core/errors.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { dirtyBlockCount, journalDirOf, listSegments, readDirty, readShipped } from './journal-files.js';
import { JournalReader } from './journal-reader.js';
import { lastRecordAndDamage } from './journal-recovery.js';
import { RecordKind } from './record.js';

export interface JournalStatus {
  volume: string;
  journal: string;
  /** Bytes of the journal's segments on disk, and how many. */
  bytes: number;
  segments: number;
  /** Sequence numbers of the oldest and newest records held (null: none held). */
  oldest: number | null;
  newest: number;
  /** What the last destination acknowledged: records up to journalTo, intervals up to `end`. */
  shipped: { destination: string; journalTo: number; intervalSeq: number; end: string } | null;
  /**
   * Records written after that point; the writes among them (CP markers of an idle volume
   * are no write); the lag: the age of the oldest such write (0 when none). After an
   * overflow the dropped writes' times are gone: `dropped`, and the lag runs from the
   * destination's last point.
   */
  unshipped: { records: number; writes: number; oldest: string | null; lagMs: number; dropped: boolean };
  /** The journal overflowed: the blocks changed since `after` wait for a resync. */
  overflow: { after: number; blocks: number } | null;
  /** pid of the shipper holding the journal, or null. */
  shipper: number | null;
  /** Damage found: a record that fails its checks, where (null: none seen). */
  damage: string | null;
}

export function journalStatus(volume: string): JournalStatus {
  const dir = journalDirOf(volume);
  if (!fs.existsSync(dir)) {
    throw new NotFoundError(`${volume}: has no write journal (${dir})`, `serve it with: imgstream serve nbd ${volume} --journal (a protection destination is a directory)`);
  }
  if (!fs.statSync(dir).isDirectory()) throw new InvalidInputError(`${dir}: is not a write journal (not a directory)`);
  const segs = listSegments(dir);
  let bytes = 0;
  for (const s of segs) {
    try {
      bytes += fs.statSync(s.path).size;
    } catch {
      /* trimmed meanwhile */
    }
  }
  const mark = readShipped(dir);
  const { last: newest, damage: tail } = lastRecordAndDamage(dir);
  let damage = tail ? `${tail.segment}: a damaged record at byte ${tail.offset}, with ${tail.bytes} bytes after it` : null;
  const from = mark ? mark.journalTo + 1 : (segs[0]?.firstSeq ?? newest + 1);
  let oldestTime: number | null = null;
  let writes = 0;
  if (from <= newest) {
    const r = new JournalReader(dir, Math.max(from, segs[0]?.firstSeq ?? from));
    try {
      for (let rec = r.next(); rec !== null; rec = r.next()) {
        if (rec.kind !== RecordKind.Data && rec.kind !== RecordKind.Zero) continue;
        oldestTime ??= rec.time;
        writes++;
      }
    } catch (err) {
      damage ??= (err as Error).message; // counted up to it
    } finally {
      r.close();
    }
  }
  const dirty = readDirty(dir);
  const now = Date.now();
  // overflowed: the writes after the destination's last point were dropped, their times with them
  const dropped = dirty !== null && mark !== null;
  if (dropped) oldestTime = mark.end;
  return {
    volume,
    journal: dir,
    bytes,
    segments: segs.length,
    oldest: segs[0]?.firstSeq ?? null,
    newest,
    shipped: mark ? { destination: mark.destination, journalTo: mark.journalTo, intervalSeq: mark.intervalSeq, end: new Date(mark.end).toISOString() } : null,
    unshipped: { records: Math.max(0, newest - from + 1), writes, oldest: oldestTime === null ? null : new Date(oldestTime).toISOString(), lagMs: oldestTime === null ? 0 : Math.max(0, now - oldestTime), dropped },
    overflow: dirty ? { after: dirty.after, blocks: dirtyBlockCount(dirty) } : null,
    shipper: VolumeLock.holder(dir)?.pid ?? null,
    damage,
  };
}
