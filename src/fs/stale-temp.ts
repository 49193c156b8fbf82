// Temporary files named after their writer's pid (".NAME.partial-PID", ".VOL.restoring-PID",
// a lock file being created: FILE.new-PID, a tape file being written: .fileNNNN.tar.partial-PID)
// are what a killed writer leaves. The next writer of the same name removes the ones whose
// process is gone; processExists() is that test, also used for the pins of a server's clients.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError, NotFoundError } from '../core/errors.js';
import { escapeRegExp } from '../core/regexp.js';

/** The longest file name (one path component) Linux file systems take. */
const NAME_MAX = 255;

/** True when a process with this pid exists (one of another user's counts: EPERM). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the files of DIR named `<prefix><pid>` (a string prefix) or matching a pattern
 * whose first group is the pid, when that pid is not a running process.
 */
export function removeStaleTemp(dir: string, name: string | RegExp): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    const pid = typeof name === 'string' ? (n.startsWith(name) ? Number(n.slice(name.length)) : NaN) : Number(name.exec(n)?.[1]);
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !processExists(pid)) fs.rmSync(path.join(dir, n), { force: true });
  }
}

/** Removes the temporary files `FILE.PID.tmp` that writers of `file` killed before their rename left (processes that are gone). */
export function removeStaleTempOf(file: string): void {
  removeStaleTemp(path.dirname(file), new RegExp(`^${escapeRegExp(path.basename(file))}\\.(\\d+)\\.tmp$`));
}

/**
 * Where the writer of `file` puts its temporary file, pid aside: `{ dir, prefix }` with
 * prefix `.BASE.TAG-`, or `.imgstream-TAG-HASH-` (HASH of BASE, the same every run)
 * when the pid-named file would pass the 255-byte name limit. Refuses, naming `file`, an
 * empty path, a name already too long, and a directory that does not exist: the
 * temporary's name must never be what an error shows.
 */
export function tempBeside(file: string, tag: string): { dir: string; prefix: string } {
  if (file === '') throw new InvalidInputError('the output path is empty', 'give a file name');
  const dir = path.dirname(file);
  const base = path.basename(file);
  if (Buffer.byteLength(base) > NAME_MAX) throw new InvalidInputError(`${file}: file name too long (at most ${NAME_MAX} bytes per name)`, 'choose a shorter name');
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new NotFoundError(`${file}: no such directory ${dir}`, 'create the directory first');
  }
  if (!st.isDirectory()) throw new InvalidInputError(`${file}: ${dir} is not a directory`);
  const long = `.${base}.${tag}-`;
  const prefix = Buffer.byteLength(long) + 10 <= NAME_MAX ? long : `.imgstream-${tag}-${createHash('sha256').update(base).digest('hex').slice(0, 16)}-`;
  return { dir, prefix };
}
