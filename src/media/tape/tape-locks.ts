// One writer at a time per tape directory, as a drive takes one job at a time: a dump
// holds a lock on every tape directory of its set from before it sizes the first tape
// (what the published tape files use of --tape-size) until its tape files are published
// or removed. A second dump to the same tape waits for the first, saying so once: it
// then sizes the tape with the first dump's tape files in it, so no tape ever holds more
// than --tape-size (two dumps sized it from what was there when each began, and both
// wrote to the end). The lock is a volume lock on the directory (src/volume/volume-lock.ts):
// one a killed dump left is stale and taken over at once.
import fs from 'node:fs';
import path from 'node:path';
import { BusyError, InterruptedError } from '../../core/errors.js';
import { VolumeLock } from '../../volume/volume-lock.js';

/** How often a waiting dump looks again. */
const POLL_MS = 200;

export class TapeLocks {
  private readonly held: VolumeLock[] = [];
  private released = false;

  /** `notice`: told once per tape a dump waits for, one line. */
  constructor(private readonly notice?: (line: string) => void) {}

  /**
   * Waits until no other imgstream process writes to any of the tape directories among
   * `tapes` (those that exist: a new tape is made by this dump), then holds them all until
   * release(). Taken in one order for every dump, whatever order its set names them in
   * (by device and inode): two dumps given the same tapes in opposite orders would each
   * hold one and wait for the other for ever. A release() meanwhile ends the wait (rejects).
   */
  async take(tapes: string[]): Promise<void> {
    for (const tape of lockOrder(tapes)) {
      let told = false;
      for (;;) {
        if (this.released) throw new InterruptedError(`tape ${tape}: the dump stopped while it waited for the tape`);
        let st: fs.Stats;
        try {
          st = fs.statSync(tape);
        } catch {
          break; // not there (yet): the dump says what is wrong with it, or makes it
        }
        if (!st.isDirectory()) break; // a drive: one opener at a time already
        try {
          this.held.push(VolumeLock.acquire(path.resolve(tape), st, 'tape directory'));
          break;
        } catch (err) {
          if (!(err instanceof BusyError)) throw err;
          const who = /imgstream process .*$/.exec(err.message)?.[0] ?? 'another imgstream process';
          if (!told) this.notice?.(`tape ${tape}: ${who} is writing to it: waiting for it to finish`);
          told = true;
          await new Promise((r) => setTimeout(r, POLL_MS));
        }
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

/** `tapes` in the order every dump takes their locks: by the directory's device and inode (those not there at the end). */
function lockOrder(tapes: string[]): string[] {
  const key = (t: string): [number, number] => {
    try {
      const st = fs.statSync(t);
      return [st.dev, st.ino];
    } catch {
      return [Infinity, Infinity];
    }
  };
  const keyed = tapes.map((t) => ({ t, k: key(t) }));
  keyed.sort((a, b) => a.k[0] - b.k[0] || a.k[1] - b.k[1]);
  return keyed.map((x) => x.t);
}
