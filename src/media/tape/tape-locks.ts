// One writer at a time per tape directory, as a drive takes one job at a time: a dump
// holds a lock on every tape directory of its set from before it sizes the first tape
// (what the published tape files use of --tape-size) until its tape files are published
// or removed. A second dump to the same tape waits for the first, saying so once: it
// then sizes the tape with the first dump's tape files in it, so no tape ever holds more
// than --tape-size (two dumps sized it from what was there when each began, and both
// wrote to the end). Each tape directory has two locks (src/volume/volume-lock.ts), both
// stale at once when a killed dump left them: one named after the directory's path, taken
// whether or not the directory is there yet, and a volume lock on the directory itself
// once it is. The path's lock covers a tape a dump makes (--new-tape): it makes the
// directory when its first tape file begins, after its snapshot, and a dump that took only
// the directory's lock found none to wait for and filled the tape past --tape-size with
// the first; the directory's covers one directory reached by two paths.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BusyError, InterruptedError } from '../../core/errors.js';
import { type LockOwner, VolumeLock } from '../../volume/volume-lock.js';

/** How often a waiting dump looks again. */
const POLL_MS = 200;

export class TapeLocks {
  private readonly held: VolumeLock[] = [];
  private released = false;
  /** Tapes this dump said it waits for. */
  private readonly told = new Set<string>();

  /** `notice`: told once per tape a dump waits for, one line. */
  constructor(private readonly notice?: (line: string) => void) {}

  /**
   * Waits until no other imgstream process writes to any of the tape directories among
   * `tapes` (those there yet or not: a new tape is made by this dump), then holds them all
   * until release(). Taken in one order for every dump, whatever order its set names them
   * in (by canonical path): two dumps given the same tapes in opposite orders would each
   * hold one and wait for the other for ever. A release() meanwhile ends the wait (rejects).
   */
  async take(tapes: string[]): Promise<void> {
    for (const { tape, canonical } of lockOrder(tapes)) {
      let st: fs.Stats | null = null;
      try {
        st = fs.statSync(tape);
      } catch {
        // not there (yet): the dump says what is wrong with it, or makes it
      }
      if (st && !st.isDirectory()) continue; // a drive: one opener at a time already
      await this.wait(tape, () => VolumeLock.acquireNamed(pathLockKey(canonical), { doing: 'a dump writing to the tape' }, (owner) => busy(tape, owner)));
      await this.wait(tape, () => {
        try {
          st = fs.statSync(tape);
        } catch {
          return null; // made later, under the path's lock
        }
        return st.isDirectory() ? VolumeLock.acquire(path.resolve(tape), st, 'tape directory') : null;
      });
    }
  }

  /** Takes one lock with `acquire` (null: none to take), waiting while another process holds it. */
  private async wait(tape: string, acquire: () => VolumeLock | null): Promise<void> {
    for (;;) {
      if (this.released) throw new InterruptedError(`tape ${tape}: the dump stopped while it waited for the tape`);
      try {
        const lock = acquire();
        if (lock) this.held.push(lock);
        return;
      } catch (err) {
        if (!(err instanceof BusyError)) throw err;
        const who = /imgstream process .*$/.exec(err.message)?.[0] ?? 'another imgstream process';
        if (!this.told.has(tape)) this.notice?.(`tape ${tape}: ${who} is writing to it: waiting for it to finish`);
        this.told.add(tape);
        await new Promise((r) => setTimeout(r, POLL_MS));
      }
    }
  }

  /** Lets the next dump have the tapes (never throws). */
  release(): void {
    this.released = true;
    for (const l of this.held.splice(0)) {
      try {
        l.release();
      } catch {
        // a lock file gone: nothing held
      }
    }
  }
}

/** The path's lock is busy: `owner` holds it (null: its lock file is still being written). */
function busy(tape: string, owner: LockOwner | null): BusyError {
  const who = owner ? `imgstream process ${owner.pid}${owner.command ? ` (${owner.command})` : ''}` : 'another imgstream process';
  return new BusyError(`tape ${tape}: tape directory is in use by ${who}`, 'wait for it to finish, or stop it');
}

/** The name of the lock on a tape directory's path. */
function pathLockKey(canonical: string): string {
  return `tape-${createHash('sha256').update(canonical).digest('hex').slice(0, 32)}`;
}

/** `p` with the symbolic links of its longest existing part resolved: one name for a tape, whether it is there yet or not. */
function canonicalPath(p: string): string {
  let head = path.resolve(p);
  const rest: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(head), ...rest);
    } catch {
      const up = path.dirname(head);
      if (up === head) return path.resolve(p);
      rest.unshift(path.basename(head));
      head = up;
    }
  }
}

/**
 * `tapes` in the order every dump takes their locks: by canonical path, which a tape has
 * whether it is there yet or not (an order by inode changed when a dump made one, and two
 * dumps that saw the set before and after could each hold a lock the other waited for).
 */
function lockOrder(tapes: string[]): { tape: string; canonical: string }[] {
  const keyed = tapes.map((tape) => ({ tape, canonical: canonicalPath(tape) }));
  keyed.sort((a, b) => (a.canonical < b.canonical ? -1 : a.canonical > b.canonical ? 1 : 0));
  return keyed;
}
