// Reading a whole file of JSON text (the catalog, the mirror state, a backup log, a
// journal directory's files) with a clear refusal when it cannot be held as one string:
// V8 strings stop at buffer.constants.MAX_STRING_LENGTH (about 512 MiB), and past that
// readFileSync(…, 'utf8') fails with "Cannot create a string longer than…", which said
// nothing of the file. No file imgstream writes comes near it.
import { constants as bufferConstants } from 'node:buffer';
import fs from 'node:fs';
import { InvalidInputError } from '../core/errors.js';
import { formatSize } from '../core/size.js';

/** Files larger than this (bytes) are refused before they are read. */
export const MAX_TEXT_FILE_BYTES = bufferConstants.MAX_STRING_LENGTH;

/**
 * The text of `file` (a path, or a descriptor open on `name`), refused with a one-line
 * InvalidInputError (exit 4) naming `what` when it is larger than MAX_TEXT_FILE_BYTES.
 */
export function readTextFile(file: string | number, what: string, name = String(file), hint?: string, limit = MAX_TEXT_FILE_BYTES): string {
  const size = typeof file === 'number' ? fs.fstatSync(file).size : fs.statSync(file).size;
  if (size > limit) {
    throw new InvalidInputError(`${name}: ${formatSize(size)} is more than imgstream reads as ${what} (at most ${formatSize(limit)})`, hint ?? `it is not ${what} imgstream wrote: give another file`);
  }
  return fs.readFileSync(file, 'utf8');
}
