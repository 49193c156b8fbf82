// Which stream a restore left unfinished. The volume's root flag says only that a restore
// stopped while it rewrote the active disk in place; finishing it takes that stream (or a
// chain holding it) again, so the restore that marks the volume names the stream in a note
// beside it (.VOL.restore-unfinished-stream), written durably before that CP and removed
// after the CP that clears the mark. A rerun given streams that the volume holds already
// is refused with the note's stream named (without the note, a copied volume, by its base).
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError } from '../core/errors.js';
import { writeFileDurably } from '../fs/durable-file.js';
import { removeStaleTempOf, tempBeside } from '../fs/stale-temp.js';
import type { Volume } from '../volume/volume.js';
import { newestSnapshot } from './restore-held.js';

export interface UnfinishedStream {
  stream: string;
  streamId: string;
  top: string;
  base: string | null;
}

function noteFile(display: string): string {
  const { dir, prefix } = tempBeside(display, 'restore-unfinished');
  return path.join(dir, `${prefix}stream`);
}

/** Names `s` as the stream whose restore onto `display` is about to be marked unfinished. */
export function noteUnfinished(display: string, s: UnfinishedStream): void {
  // (its temporary files a restore killed before their rename left go with its first write: writeFileDurably)
  writeFileDurably(noteFile(display), `${JSON.stringify(s)}\n`);
}

/** Once the mark is cleared: the note goes. */
export function clearUnfinishedNote(display: string): void {
  const note = noteFile(display);
  fs.rmSync(note, { force: true });
  removeStaleTempOf(note); // (and those a killed restore left)
}

function readNote(display: string): UnfinishedStream | null {
  try {
    const s = JSON.parse(fs.readFileSync(noteFile(display), 'utf8')) as UnfinishedStream;
    return typeof s.stream === 'string' && typeof s.top === 'string' ? s : null;
  } catch {
    return null;
  }
}

/**
 * The error for a restore onto `vol`, still unfinished, that applied nothing (every stream
 * given was held already): it needs the stream it stopped in.
 */
export function unfinishedNeedsStream(vol: Volume | { newest: string | undefined }, display: string, given: string[]): InvalidInputError {
  const note = readNote(display);
  const base = 'newest' in vol ? vol.newest : newestSnapshot(vol)?.name;
  const what = note
    ? `the stream it stopped in, ${note.stream} (dump ${note.streamId.slice(0, 8)}, top snapshot "${note.top}"${note.base ? `, base "${note.base}"` : ''})`
    : `the stream it stopped in (the one going on from its newest snapshot${base ? ` "${base}"` : ''})`;
  return new InvalidInputError(
    `${display}: a restore into it stopped while it rewrote the active disk in place, and ${given.join(', ')} ${given.length > 1 ? 'bring' : 'brings'} nothing it lacks: finishing that restore needs ${what}`,
    note ? `run that restore again, with that stream or with --as-of "${note.top}"` : 'run that restore again, with the same --from or --as-of',
  );
}
