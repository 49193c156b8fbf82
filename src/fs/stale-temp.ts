// Temporary files named after their writer's pid (".NAME.partial-PID", ".VOL.restoring-PID",
// a lock file being created: FILE.new-PID, a tape file being written: .fileNNNN.tar.partial-PID)
// are what a killed writer leaves. The next writer of the same name removes the ones whose
// process is gone; processExists() is that test, also used for the pins of a server's clients.
import fs from 'node:fs';
import path from 'node:path';

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
