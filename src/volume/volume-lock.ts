// One process at a time works on a volume. The lock is a file named after the volume's
// device and inode in a runtime directory, holding the owner's pid and process start
// time, so a lock left by a killed process (kill -9) is recognised as stale and taken
// over at once: no stale lock ever blocks the next command.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BusyError } from '../errors.js';

function lockDir(): string {
  return process.env.IMGSTREAM_LOCK_DIR ?? path.join(os.tmpdir(), 'imgstream-locks');
}

function startTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

function alive(pid: number, start: string): boolean {
  const now = startTime(pid);
  if (now !== null) return now === start;
  try {
    process.kill(pid, 0);
    return !fs.existsSync('/proc/self/stat'); // no /proc: trust kill(0)
  } catch {
    return false;
  }
}

export class VolumeLock {
  private released = false;
  private readonly onExit = () => this.release();
  private constructor(readonly file: string, private readonly token: string) {
    process.once('exit', this.onExit);
  }

  static acquire(volumePath: string, st: fs.Stats, what = 'volume'): VolumeLock {
    const dir = lockDir();
    fs.mkdirSync(dir, { recursive: true, mode: 0o1777 });
    const file = path.join(dir, `${st.dev}-${st.ino}.lock`);
    const token = `${process.pid} ${startTime(process.pid) ?? '0'}`;
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        fs.writeFileSync(file, token, { flag: 'wx', mode: 0o666 });
        return new VolumeLock(file, token);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      let holder = '';
      try {
        holder = fs.readFileSync(file, 'utf8');
      } catch {
        continue; // released meanwhile
      }
      const [pid, start] = holder.split(' ');
      if (Number(pid) > 0 && alive(Number(pid), start ?? '0') && Number(pid) !== process.pid) {
        throw new BusyError(`${volumePath}: ${what} is in use by imgstream process ${pid}`, 'wait for it to finish, or stop it');
      }
      // stale (its process is gone): take it over
      try {
        if (fs.readFileSync(file, 'utf8') === holder) fs.unlinkSync(file);
      } catch {
        /* someone else cleaned it */
      }
    }
    throw new BusyError(`${volumePath}: could not lock the ${what}`, 'another imgstream process keeps taking it');
  }

  release(): void {
    if (this.released) return;
    this.released = true;
    process.removeListener('exit', this.onExit);
    try {
      if (fs.readFileSync(this.file, 'utf8') === this.token) fs.unlinkSync(this.file);
    } catch {
      /* gone already */
    }
  }
}
