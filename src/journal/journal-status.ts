// `protect status VOLUME`: the source's side of continuous protection, read without the
// journal's lock (a shipper and a server may be at work): how much journal the volume
// keeps, how far a destination has acknowledged it (shipped.json), and the lag, the age
// of the oldest record written after that point.
import fs from 'node:fs';
import { InvalidInputError, NotFoundError } from '../core/errors.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { journalDirOf, listSegments, readDirty, readShipped } from './journal-files.js';
import { JournalReader, lastRecordOf } from './journal-reader.js';

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
  /** Records written after that point, and the age of the oldest of them (0 when none). */
  unshipped: { records: number; oldest: string | null; lagMs: number };
  /** The journal overflowed: the blocks changed since `after` wait for a resync. */
  overflow: { after: number; blocks: number } | null;
  /** pid of the shipper holding the journal, or null. */
  shipper: number | null;
}

export function journalStatus(volume: string): JournalStatus {
  const dir = journalDirOf(volume);
  if (!fs.existsSync(dir)) {
    throw new NotFoundError(`${volume}: has no write journal (${dir})`, 'serve it with: imgstream serve nbd VOL --journal; a protection destination is a directory');
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
  const newest = lastRecordOf(dir);
  const from = mark ? mark.journalTo + 1 : (segs[0]?.firstSeq ?? newest + 1);
  let oldestTime: number | null = null;
  if (from <= newest) {
    const r = new JournalReader(dir, Math.max(from, segs[0]?.firstSeq ?? from));
    try {
      oldestTime = r.next()?.time ?? null;
    } finally {
      r.close();
    }
  }
  const dirty = readDirty(dir);
  const now = Date.now();
  return {
    volume,
    journal: dir,
    bytes,
    segments: segs.length,
    oldest: segs[0]?.firstSeq ?? null,
    newest,
    shipped: mark ? { destination: mark.destination, journalTo: mark.journalTo, intervalSeq: mark.intervalSeq, end: new Date(mark.end).toISOString() } : null,
    unshipped: { records: Math.max(0, newest - from + 1), oldest: oldestTime === null ? null : new Date(oldestTime).toISOString(), lagMs: oldestTime === null ? 0 : Math.max(0, now - oldestTime) },
    overflow: dirty ? { after: dirty.after, blocks: dirty.lbns.length } : null,
    shipper: VolumeLock.holder(dir)?.pid ?? null,
  };
}
