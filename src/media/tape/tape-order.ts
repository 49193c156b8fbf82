// The tapes of a set given out of order, twice, from another set, or one of them missing,
// named before anything is read: a dump that spans tapes is tape 1 (its last tape file),
// tape 2, … (each the first tape file of the next tape), and every tape file's label says
// which tape of which dump it is. Without this check, a continuation given first was
// skipped silently, and a wrong tape after one whose last dump goes on was found only
// when the reader got there, as damage (exit 9) after reading the whole first tape.
// Restore and verify also refuse a set whose last tape ends in the middle of a dump they
// would read (refuseMissingContinuation): found at the end of reading, a restore had
// applied the dumps before it by then. A drive cannot be read ahead: a set ending on one
// is checked as it is read (each stream is applied whole or not at all).
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError, NotFoundError } from '../../core/errors.js';
import { listTapeFiles, type TapeKind } from './tape-directory.js';
import { readTapeLabel, type TapeFileLabel } from './tape-file-reader.js';
import { continuedStreams, tapeFileContinues } from './tape-file-ending.js';
import { volumeMatches } from './multiplex-source.js';
import type { TapeLabel } from './tape-format.js';

interface TapeEnds {
  dir: string;
  first: TapeLabel | null;
  last: TapeFileLabel | null;
  /** The last tape file's stream goes on on the next tape (null: not known, a device or damage). */
  continues: boolean | null;
}

/** How a tape is named in messages: its path and what its label says. */
function describe(t: TapeEnds, label: TapeLabel): string {
  return `tape ${t.dir} (tape ${label.sequence} of dump ${label.streamId}${label.label ? `, label "${label.label}"` : ''})`;
}

/**
 * Refuses a set whose tapes are out of order, repeated, from another set or miss one in
 * the middle of a dump: every tape whose first tape file continues a dump must come right
 * after the tape that holds the dump's previous tape, and a tape whose last dump goes on
 * must be followed by the tape that continues it. A tape given twice (also under another
 * name, or as a copy holding the same tape files) is refused. A continuation whose
 * earlier tapes were not given at all is refused after another tape (it is not part of
 * the set), and left to the reader when it is the first tape given (it skips it: the
 * tape's later dumps can still be read); so is a last tape whose last dump goes on (see
 * refuseMissingContinuation: restore and verify refuse it, catalog rebuild skips it).
 */
export async function checkTapeOrder(tapes: string[], kinds: TapeKind[]): Promise<void> {
  if (tapes.length < 2) return;
  refuseRepeatedTapes(tapes, kinds);
  const ends: TapeEnds[] = [];
  for (let i = 0; i < tapes.length; i++) {
    if (kinds[i] !== 'directory') {
      ends.push({ dir: tapes[i], first: null, last: null, continues: null });
      continue;
    }
    const files = listTapeFiles(tapes[i]);
    const first = files.length ? await readTapeLabel({ name: `tape ${tapes[i]} file ${files[0].number}`, path: files[0].path }) : null;
    const lastFile = files.at(-1);
    const lastRef = lastFile && { name: `tape ${tapes[i]} file ${lastFile.number}`, path: lastFile.path };
    const last = lastRef && lastFile !== files[0] ? await readTapeLabel(lastRef) : first;
    const continues = lastRef && last ? tapeFileContinues(lastRef, last) : null;
    ends.push({ dir: tapes[i], first, last, continues });
  }
  // a copy of a tape (or its tape files under another directory): the same first tape file twice
  for (let i = 1; i < ends.length; i++) {
    const f = ends[i].first;
    const k = f ? ends.findIndex((e, j) => j < i && e.first?.streamId === f.streamId && e.first.sequence === f.sequence) : -1;
    if (f && k >= 0) {
      throw new InvalidInputError(
        `${describe(ends[i], f)} is given as tape ${i + 1} of the set, but tape ${ends[k].dir}, given as tape ${k + 1}, begins with the same tape file: the same tape given twice, or a copy of it`,
        'give each tape once: tape:DIR1,DIR2,...',
      );
    }
  }
  /** Where tape `sequence` of dump `id` was given: a tape whose first file is it, or (tape 1) whose last file starts it. */
  const holder = (id: string, sequence: number): number =>
    ends.findIndex((e) => (e.first?.streamId === id && e.first.sequence === sequence) || (sequence === 1 && e.last?.streamId === id && e.last.sequence === 1));
  for (let i = 0; i < ends.length; i++) {
    const f = ends[i].first;
    if (!f || f.sequence === 1) continue;
    const before = holder(f.streamId, f.sequence - 1);
    if (before === i - 1) continue;
    // the dump's tapes as given, in its order: what the user should have written
    const order: string[] = [];
    for (let q = 1; ; q++) {
      const k = holder(f.streamId, q);
      if (k < 0) break;
      order.push(ends[k].dir);
    }
    if (before >= 0) {
      throw new InvalidInputError(
        `${describe(ends[i], f)} is given as tape ${i + 1} of the set, but must come right after tape ${ends[before].dir} (tape ${f.sequence - 1} of that dump), given as tape ${before + 1}`,
        order.length ? `give the tapes in the order of the dump: tape:${order.join(',')}` : 'give the tapes in the order they were written',
      );
    }
    if (holder(f.streamId, 1) >= 0) {
      throw new NotFoundError(
        `tape ${f.sequence - 1} of dump ${f.streamId} was not given: ${describe(ends[i], f)} continues it`,
        `give every tape of the dump in order${order.length ? `, starting tape:${order.join(',')}` : ''}`,
      );
    }
    // after another tape it belongs to no dump given (first, it may be read for the dumps that start on it)
    if (i > 0) {
      throw new InvalidInputError(
        `${describe(ends[i], f)} is given after tape ${ends[i - 1].dir}, but continues a dump none of whose earlier tapes was given: it is not part of this set`,
        `give the tapes of one set in order from its first; a dump that starts on ${ends[i].dir} reads alone: tape:${ends[i].dir}#N`,
      );
    }
  }
  refuseWrongNextTapes(ends, kinds);
}

/** What of a set is read: the dump starting in tape file `file` of the first tape, a multiplexed file's stream or volume. */
export interface SetSelection {
  file?: number;
  stream?: string;
  volume?: string;
}

/**
 * Refuses a set whose last tape (a directory) ends in a tape file whose dump goes on on a
 * next tape that was not given, when that dump would be read (with #N only the dump of
 * tape file N is; in a multiplexed file only the streams of the volume or stream asked
 * for). Run before anything is read, after checkTapeOrder: the dumps that end on the
 * tapes given are still read alone (tape:DIR#N).
 */
export async function refuseMissingContinuation(tapes: string[], kinds: TapeKind[], select: SetSelection): Promise<void> {
  const last = tapes.length - 1;
  if (kinds[last] !== 'directory') return; // a drive: found as it is read
  const files = listTapeFiles(tapes[last]);
  const lastFile = files.at(-1);
  if (!lastFile) return; // an empty tape: refused by the order check, or nothing to read
  const ref = { name: `tape ${tapes[last]} file ${lastFile.number}`, path: lastFile.path };
  const label = await readTapeLabel(ref);
  const going = continuedStreams(ref, label);
  if (!going || going.length === 0) return; // ends there, or cannot be told (damage: the reader names it)
  if (select.file !== undefined) {
    // the dump read starts in tape file N of the first tape; it reaches this file only if it is this dump's tape 1
    if (label.sequence !== last + 1 || (last === 0 ? lastFile : listTapeFiles(tapes[0]).at(-1))?.number !== select.file) return;
  }
  const read = going.filter((s) => !s.multiplexed || ((select.stream === undefined || s.streamId === select.stream) && (select.volume === undefined || volumeMatches(s, select.volume))));
  if (read.length === 0) return;
  const what = label.multiplex ? `multiplexed dump ${label.streamId}${read.length === 1 && read[0].volume ? ` (the dump of ${read[0].volume.path})` : ''}` : `dump ${label.streamId}`;
  throw new NotFoundError(
    `${ref.name} (tape ${label.sequence} of ${what}) goes on on tape ${label.sequence + 1} of that dump, which was not given: the set ends in the middle of the dump`,
    `give its next tape after ${tapes[last]}: tape:${tapes.join(',')},NEXT; a dump that ends on these tapes reads alone: tape:DIR#N`,
  );
}

/** The same tape given twice: the same path, or the same directory under another name (a symbolic link). */
function refuseRepeatedTapes(tapes: string[], kinds: TapeKind[]): void {
  const seen = new Map<string, number>();
  for (let i = 0; i < tapes.length; i++) {
    const keys = [path.resolve(tapes[i])];
    if (kinds[i] === 'directory') {
      try {
        const st = fs.statSync(tapes[i]);
        keys.push(`${st.dev}:${st.ino}`);
      } catch {
        /* listing it says what is wrong */
      }
    }
    for (const key of keys) {
      const before = seen.get(key);
      if (before === undefined) continue;
      const alias = path.resolve(tapes[before]) === keys[0] ? '' : `: it is the same directory as ${tapes[before]}`;
      throw new InvalidInputError(`tape ${tapes[i]} is given twice (as tapes ${before + 1} and ${i + 1} of the set${alias})`, 'give each tape once: tape:DIR1,DIR2,...');
    }
    for (const key of keys) seen.set(key, i);
  }
}

/** A tape whose last dump goes on must be followed by that dump's next tape (a device is checked as it is read). */
function refuseWrongNextTapes(ends: TapeEnds[], kinds: TapeKind[]): void {
  for (let i = 0; i + 1 < ends.length; i++) {
    const last = ends[i].last;
    if (!last || ends[i].continues !== true || kinds[i + 1] !== 'directory') continue;
    const next = ends[i + 1];
    const f = next.first;
    if (f && f.streamId === last.streamId && f.sequence === last.sequence + 1) continue;
    const goesOn = `whose last tape file (tape ${last.sequence} of dump ${last.streamId}) goes on on tape ${last.sequence + 1} of that dump`;
    const found = f ? describe(next, f) : `tape ${next.dir} (empty)`;
    throw new InvalidInputError(
      `${found} is given after tape ${ends[i].dir}, ${goesOn}: it is not part of this set`,
      `give the tapes of one set in order from its first: after ${ends[i].dir} give the tape that holds tape ${last.sequence + 1} of dump ${last.streamId}`,
    );
  }
}
