// One restore at a time creates a volume under a name. Two restores into the same new path
// (a retry while the first still runs, two jobs) both built the whole volume under their
// own temporary names, and the second then failed at the final link ("appeared while
// restoring", with a hint that failed again). The name is claimed by a named lock (the
// directory's device and inode, and a hash of the name: pid and start time, so a killed
// restore leaves none that counts) before anything is built; a second is refused at once.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BusyError } from '../core/errors.js';
import { VolumeLock, type LockOwner } from '../volume/volume-lock.js';

/** Claims the new volume `volumePath` for this restore (released by the function returned), or refuses, busy, naming the restore that holds it. */
export function claimNewVolume(volumePath: string): () => void {
  let dir: fs.Stats;
  try {
    dir = fs.statSync(path.dirname(path.resolve(volumePath)));
  } catch {
    return () => {}; // no directory: creating the volume says so itself
  }
  const key = `${dir.dev}-${dir.ino}.restore-${createHash('sha256').update(path.basename(volumePath)).digest('hex').slice(0, 24)}`;
  const lock = VolumeLock.acquireNamed(key, { doing: 'a restore creating it' }, (owner: LockOwner | null) =>
    new BusyError(`${volumePath}: ${owner ? `a restore creating it is in progress (imgstream process ${owner.pid}${owner.command ? `: ${owner.command}` : ''})` : 'another imgstream process is creating it'}`, 'wait for it to finish, or stop it'),
  );
  return () => lock.release();
}
