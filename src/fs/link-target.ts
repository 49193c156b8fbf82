// A file replaced atomically (written beside, renamed into place) must be replaced where it
// is: renaming onto a symbolic link's own path replaces the link with a regular file, and
// the file it pointed to (a catalog or mirror state shared through a link) silently stops
// getting records. Writers resolve the link first and write beside its target.
//
// An output path that is a link to nothing is taken, as a file there would be: a new file
// renamed or linked into place would replace the link (or fail, EEXIST, at the very end).
import fs from 'node:fs';
import path from 'node:path';
import { ExistsError, InvalidInputError, NotFoundError, fromSystemError } from '../core/errors.js';

/** Links followed before giving up, as the kernel's ELOOP limit. */
const MAX_LINKS = 40;

/**
 * The path a replacement of `file` is to be renamed onto: `file` itself, or the file its
 * symbolic links end at (one that may not exist yet: a dangling link's target is created
 * there). A dangling link whose target's directory does not exist is refused, naming both.
 */
export function replacementTarget(file: string): string {
  let at = file;
  for (let n = 0; n <= MAX_LINKS; n++) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(at);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, file, 'resolving its symbolic link');
      if (at !== file && !fs.existsSync(path.dirname(at))) throw new NotFoundError(`${file}: a symbolic link to ${at}, whose directory ${path.dirname(at)} does not exist`, 'create that directory, or remove the link');
      return at;
    }
    if (!st.isSymbolicLink()) return at;
    at = path.resolve(path.dirname(at), fs.readlinkSync(at));
  }
  throw new InvalidInputError(`${file}: too many levels of symbolic links (a loop?)`, 'point it at a file');
}

/** Where `file` points when it is a symbolic link to nothing (or to a loop); null when it is no such link. */
export function danglingLinkTarget(file: string): string | null {
  try {
    if (!fs.lstatSync(file).isSymbolicLink() || fs.existsSync(file)) return null;
    return fs.readlinkSync(file);
  } catch {
    return null; // not there at all, or gone meanwhile
  }
}

/** Refuses an output path that is a symbolic link to nothing, as an existing file is refused (ExistsError, with `hint`). */
export function refuseDanglingLink(file: string, hint: string): void {
  const to = danglingLinkTarget(file);
  if (to !== null) throw new ExistsError(`${file}: already exists: a symbolic link to ${to}, which does not exist`, hint);
}
