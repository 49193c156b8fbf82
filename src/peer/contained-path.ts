// Where a NAME sent by a client lands: always inside the daemon's directory. The name
// obeys checkPeerName (no "..", not absolute, ...), and every part of it that exists is
// resolved through symbolic links, which must lead to places inside the directory too:
// an administrator's link to elsewhere is refused, not followed.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError, fromSystemError } from '../core/errors.js';
import { checkPeerName, SHOWN_CHARS } from './peer-url.js';
import { escapeControls } from '../core/control-chars.js';

/** True when `p` is `root` or below it (both real paths). */
export function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function escapes(name: string): InvalidInputError {
  return new InvalidInputError(`invalid peer name "${escapeControls(name, SHOWN_CHARS)}": it leads outside the daemon's directory through a symbolic link`, 'use a name inside the directory');
}

/**
 * The path NAME stands for under `realRoot` (a real path): existing components are
 * resolved to their real paths, which must stay inside; the rest (not yet created)
 * is appended as is. Throws InvalidInputError for a bad or escaping name.
 */
export function resolveContained(realRoot: string, name: string): string {
  checkPeerName(name);
  const parts = name.split('/');
  let cur = realRoot;
  for (let i = 0; i < parts.length; i++) {
    const next = path.join(cur, parts[i]);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(next);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return path.join(cur, ...parts.slice(i));
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') throw new InvalidInputError(`invalid peer name "${escapeControls(name, SHOWN_CHARS)}": "${escapeControls(parts.slice(0, i).join('/'), SHOWN_CHARS)}" is not a directory`);
      throw fromSystemError(err, name, 'looking up the name');
    }
    if (st.isSymbolicLink()) {
      let real: string;
      try {
        real = fs.realpathSync(next);
      } catch {
        throw escapes(name); // a link that leads nowhere: where it would lead is not ours to find out
      }
      if (!isInside(realRoot, real)) throw escapes(name);
      cur = real;
    } else cur = next;
    if (i < parts.length - 1 && !fs.statSync(cur).isDirectory()) {
      throw new InvalidInputError(`invalid peer name "${escapeControls(name, SHOWN_CHARS)}": "${escapeControls(parts.slice(0, i + 1).join('/'), SHOWN_CHARS)}" is not a directory`);
    }
  }
  return cur;
}

/**
 * Creates the missing directories between `realRoot` and `file`'s directory (one at a
 * time, none through a link), then checks again that the directory is inside. Returns
 * the directories it created, outermost first (removeMadeParents undoes it).
 */
export function makeParents(realRoot: string, file: string, name: string): string[] {
  const made: string[] = [];
  const dir = path.dirname(file);
  const rel = path.relative(realRoot, dir);
  if (rel.startsWith('..') || path.isAbsolute(rel)) throw escapes(name);
  let cur = realRoot;
  for (const part of rel === '' ? [] : rel.split(path.sep)) {
    cur = path.join(cur, part);
    try {
      fs.mkdirSync(cur);
      made.push(cur);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw fromSystemError(err, name, 'creating its directory');
      if (!fs.lstatSync(cur).isDirectory()) throw escapes(name); // replaced by something else meanwhile
    }
  }
  if (!isInside(realRoot, fs.realpathSync(dir))) throw escapes(name);
  return made;
}

/**
 * Removes directories makeParents created, innermost first, as long as they are empty
 * (another transfer may have put something there meanwhile: then it and its parents stay).
 */
export async function removeMadeParents(made: readonly string[]): Promise<void> {
  for (const dir of [...made].reverse()) {
    try {
      await fs.promises.rmdir(dir);
    } catch {
      return;
    }
  }
}
