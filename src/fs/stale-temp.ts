// Temporary files named after their writer's pid (".NAME.partial-PID", ".VOL.restoring-PID",
// a lock file being created: FILE.new-PID)
// are what a killed writer leaves. The next writer of the same name removes the
// ones whose process is gone.
import fs from 'node:fs';
import path from 'node:path';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Removes DIR/<prefix><pid> files whose pid is not a running process. */
export function removeStaleTemp(dir: string, prefix: string): void {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const n of names) {
    if (!n.startsWith(prefix)) continue;
    const pid = Number(n.slice(prefix.length));
    if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && !alive(pid)) fs.rmSync(path.join(dir, n), { force: true });
  }
}
