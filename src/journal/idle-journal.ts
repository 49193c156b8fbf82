// A snapshot taken or renamed, or an image imported, on a journaled volume that no server
// holds: the command holding the volume tells the journal what the server would have (its
// write journal is opened for the one operation, as a server with --journal opens it, then
// closed), so the snapshot or the new name reaches the protection destination with the
// next interval, as when the volume is served, and an import's changed blocks are tracked
// as after an overflow (the next transfer resyncs just those), instead of being a change
// the journal never saw (which stops protect). Opening the journal recovers it like a
// restarting server does: a torn tail is cut off and the writes its last CP lacks are
// replayed first, so the snapshot holds every write the journal acknowledged.
//
// A journal that cannot be opened (damaged, or the disk changed without it) does not
// stop the snapshot command: it goes ahead unjournaled and says why (`skipped`).
import fs from 'node:fs';
import { ImgstreamError } from '../core/errors.js';
import type { Volume } from '../volume/volume.js';
import { journalDirOf, listSegments } from './journal-files.js';
import { JournalWriter } from './journal-writer.js';
import { JournalReader } from './journal-reader.js';
import { parseMarker, RecordKind } from './record.js';
import { BlockFile } from '../volume/block-file.js';
import { readRootRecord } from '../volume/root-reader.js';
import { VolumeLock } from '../volume/volume-lock.js';

export interface IdleJournaling<T> {
  result: T;
  /** Present when the volume has a write journal: recorded in it, or why not. */
  journal?: { recorded: true; replayed: number } | { recorded: false; skipped: string };
}

/** True when `volume` has a write journal holding records (it has been served with --journal). */
export function hasJournal(volume: string): boolean {
  const dir = journalDirOf(volume);
  return fs.existsSync(dir) && listSegments(dir).length > 0;
}

/** The write journal of `vol` (opened here, for writing) opened for a command's operation: undefined when it has none. */
export function openIdleJournal(vol: Volume): { writer: JournalWriter } | { skipped: string } | undefined {
  if (!hasJournal(vol.path)) return undefined;
  try {
    // no size limit here: overflowing is the server's decision, at the limit it was given
    return { writer: JournalWriter.open(vol, { limitBytes: Number.MAX_SAFE_INTEGER }) };
  } catch (err) {
    if (!(err instanceof ImgstreamError)) throw err;
    return { skipped: err.message };
  }
}

/**
 * Closes a journal openIdleJournal opened once the operation is done (`ok`): a snapshot's
 * record follows its CP, and after an overflow it is kept in dirty.json and dirty.bits, which only a CP
 * writes, so that is saved first. After a failure it is closed as it is.
 */
export function closeIdleJournal(writer: JournalWriter, ok: boolean): void {
  if (ok) {
    writer.beforeCp();
    writer.close();
    return;
  }
  try {
    writer.close();
  } catch {
    // the operation's own error is the one to report
  }
}

/**
 * Before a command changes a journaled volume that no server holds (a dump's or a mirror
 * update's snapshot, a snapshot deleted, a server without --journal): its journal is opened
 * and closed again, which replays the writes a server killed -9 acknowledged after its last
 * CP. Without it the command's CP went past them: the volume then read as before them for
 * good (the next server refused the journal, its tail older than the volume), and a snapshot
 * taken meanwhile lacked them. What it did, as openIdleJournal says it (undefined: no journal).
 */
export function replayIdleJournal(vol: Volume): IdleJournaling<unknown>['journal'] {
  const opened = openIdleJournal(vol);
  if (opened !== undefined && 'writer' in opened) closeIdleJournal(opened.writer, true);
  return idleJournaling(opened);
}

/**
 * The writes a server killed -9 acknowledged after its last CP that the journal of the
 * volume at `volumePath` holds and the volume does not yet (the next server, or a command
 * that changes the volume, replays them; one that only reads shows the volume without
 * them): the change records after the last segment's last CP or OPEN marker, when that
 * marker is of the volume's generation (a crash between a CP and its marker left records
 * the volume holds). 0 when there are none, or a process holds the volume (a server: the
 * journal is its own). Reads the last segment only: a new one begins after a CP marker.
 */
export function unreplayedWrites(volumePath: string): number {
  if (!hasJournal(volumePath) || VolumeLock.holder(volumePath) !== null) return 0;
  const dir = journalDirOf(volumePath);
  let generation: number;
  try {
    const file = BlockFile.open(volumePath, false);
    try {
      generation = readRootRecord(file, volumePath).generation;
    } finally {
      file.close();
    }
  } catch {
    return 0; // the command's own open names what is wrong
  }
  const segs = listSegments(dir);
  const r = new JournalReader(dir, segs[segs.length - 1].firstSeq);
  let marker: number | undefined;
  let n = 0;
  try {
    for (let rec = r.next(); rec !== null; rec = r.next()) {
      if (rec.kind === RecordKind.Cp || rec.kind === RecordKind.Open) {
        marker = parseMarker<{ generation?: number }>(rec).generation;
        n = 0;
      } else if (rec.kind === RecordKind.Data || rec.kind === RecordKind.Zero) n++;
    }
  } catch {
    return 0; // damage: the server's start names it
  } finally {
    r.close();
  }
  return marker === generation ? n : 0;
}

/** What became of the journal of a command's operation, for its output. */
export function idleJournaling(opened: ReturnType<typeof openIdleJournal>): IdleJournaling<unknown>['journal'] {
  if (opened === undefined) return undefined;
  return 'skipped' in opened ? { recorded: false, skipped: opened.skipped } : { recorded: true, replayed: opened.writer.recovery.replayed };
}

/** Runs fn on `vol` (opened here, for writing) with its write journal open when it has one. */
export async function withIdleJournal<T>(vol: Volume, fn: () => T | Promise<T>): Promise<IdleJournaling<T>> {
  const opened = openIdleJournal(vol);
  if (opened === undefined || 'skipped' in opened) return { result: await fn(), journal: idleJournaling(opened) };
  let result: T;
  try {
    result = await fn();
  } catch (err) {
    closeIdleJournal(opened.writer, false);
    throw err;
  }
  closeIdleJournal(opened.writer, true);
  return { result, journal: idleJournaling(opened) };
}
