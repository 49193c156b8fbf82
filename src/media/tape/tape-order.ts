// The tapes of a set given out of order, or one of them missing, named before anything is
// read: a dump that spans tapes is tape 1 (its last tape file), tape 2, … (each the first
// tape file of the next tape), and every tape file's label says which tape of which dump
// it is. Without this check, a continuation given first was skipped silently and the
// reader then complained about a tape number the user never gave.
import path from 'node:path';
import { InvalidInputError, NotFoundError } from '../../core/errors.js';
import { listTapeFiles, type TapeKind } from './tape-directory.js';
import { readTapeLabel } from './tape-file-reader.js';
import type { TapeLabel } from './tape-format.js';

interface TapeEnds {
  dir: string;
  first: TapeLabel | null;
  last: TapeLabel | null;
}

/** How a tape is named in messages: its path and what its label says. */
function describe(t: TapeEnds, label: TapeLabel): string {
  return `tape ${t.dir} (tape ${label.sequence} of dump ${label.streamId}${label.label ? `, label "${label.label}"` : ''})`;
}

/**
 * Refuses a set whose tapes are out of order or miss one in the middle of a dump: every
 * tape whose first tape file continues a dump must come right after the tape that holds
 * the dump's previous tape. A continuation whose earlier tapes were not given at all is
 * refused after another tape (it is not part of the set), and left to the reader when it
 * is the first tape given (it skips it: the tape's later dumps can still be read).
 */
export async function checkTapeOrder(tapes: string[], kinds: TapeKind[]): Promise<void> {
  if (tapes.length < 2) return;
  const seen = new Map<string, number>();
  for (let i = 0; i < tapes.length; i++) {
    const key = path.resolve(tapes[i]);
    const before = seen.get(key);
    if (before !== undefined) throw new InvalidInputError(`tape ${tapes[i]} is given twice (as tapes ${before + 1} and ${i + 1} of the set)`, 'give each tape once: tape:DIR1,DIR2,...');
    seen.set(key, i);
  }
  const ends: TapeEnds[] = [];
  for (let i = 0; i < tapes.length; i++) {
    if (kinds[i] !== 'directory') {
      ends.push({ dir: tapes[i], first: null, last: null });
      continue;
    }
    const files = listTapeFiles(tapes[i]);
    const first = files.length ? await readTapeLabel({ name: `tape ${tapes[i]} file ${files[0].number}`, path: files[0].path }) : null;
    const lastFile = files.at(-1);
    const last = lastFile && lastFile !== files[0] ? await readTapeLabel({ name: `tape ${tapes[i]} file ${lastFile.number}`, path: lastFile.path }) : first;
    ends.push({ dir: tapes[i], first, last });
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
}
