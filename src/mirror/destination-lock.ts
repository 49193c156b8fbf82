// One conversation at a time with a mirror destination. Two transfers into one NAME (cron
// starting the next before the last ended, a user retrying) would share its side files:
// a first transfer has no volume yet whose lock could keep the second out, and each would
// build, resume or drop `.NAME.mirror-new` under the other. So every conversation of the
// receiver (update, resync, state, break, abandon) holds the destination's own lock, a
// named volume lock (src/volume/volume-lock.ts: pid and start time, so a `kill -9` leaves
// none that counts) keyed by the directory's device and inode and NAME, taken before the
// destination's state is read and released when it is done; a second is refused at once,
// busy, naming the first, before the source takes a snapshot. A peer daemon serves many
// connections in one process, which a lock file cannot tell apart: this process's holders
// are kept here as well.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { BusyError } from '../core/errors.js';
import { VolumeLock, type LockOwner } from '../volume/volume-lock.js';
import type { MirrorChannel } from './protocol.js';

/** What each operation is doing, as a refused one is told. */
const DOING: Record<string, string> = {
  'mirror.update': 'a mirror transfer into it',
  'mirror.resync': 'a mirror resync into it',
  'mirror.state': 'a look at its mirror state',
  'mirror.break': 'a mirror break of it',
  'mirror.abandon': 'a mirror abandon of it',
};

/** The destinations this process holds (lock name -> who, as a refused one is told). */
const heldHere = new Map<string, string>();

/** The lock's name: the directory's device and inode, and a hash of NAME (any bytes, up to 255 of them). */
function lockName(volPath: string): string | null {
  let dir: fs.Stats;
  try {
    dir = fs.statSync(path.dirname(volPath));
  } catch {
    return null; // no directory: no transfer can be there, and the operation says so itself
  }
  return `${dir.dev}-${dir.ino}.mirror-${createHash('sha256').update(path.basename(volPath)).digest('hex').slice(0, 24)}`;
}

/** "a mirror transfer into it is in progress (imgstream process 4242: mirror update)". */
function describe(doing: string, who: string): string {
  return `${doing} is in progress (${who})`;
}

export class DestinationLock {
  private released = false;
  private constructor(private readonly name: string | null, private readonly lock: VolumeLock | null) {}

  /**
   * Takes the destination `volPath` for `op` (a mirror.* operation), or refuses, busy, in
   * one line that names the operation holding it and its process. `client`: who asks,
   * when that is not this process (a peer daemon's client, which names the destination
   * by its own URL: the line does not begin with `volPath` then).
   */
  static acquire(volPath: string, op: string, client?: string): DestinationLock {
    const name = lockName(volPath);
    if (name === null) return new DestinationLock(null, null);
    const doing = DOING[op] ?? `mirror ${op}`;
    const refuse = (what: string) => new BusyError(client ? what : `${volPath}: ${what}`, 'wait for it to finish, or stop it: a stopped transfer resumes on the next update');
    const here = heldHere.get(name);
    if (here !== undefined) throw refuse(here);
    const who = client ?? `imgstream process ${process.pid}`;
    const lock = VolumeLock.acquireNamed(name, { doing, ...(client ? { client } : {}) }, (owner: LockOwner | null) => {
      if (!owner) return refuse('another imgstream process is taking it');
      const process_ = `imgstream process ${owner.pid}${owner.command ? `: ${owner.command}` : ''}`;
      const theirs = owner.fields.get('client');
      return refuse(describe(owner.fields.get('doing') ?? 'a mirror transfer into it', theirs ? `${theirs}, through ${process_}` : process_));
    });
    heldHere.set(name, describe(doing, who));
    return new DestinationLock(name, lock);
  }

  release(): void {
    if (this.released || this.name === null || !this.lock) return;
    this.released = true;
    heldHere.delete(this.name);
    this.lock.release();
  }
}

/** Runs fn holding the destination `volPath` for `op` (see DestinationLock.acquire). */
export async function withDestinationLock<T>(volPath: string, op: string, fn: () => T | Promise<T>, client?: string): Promise<T> {
  const lock = DestinationLock.acquire(volPath, op, client);
  try {
    return await fn();
  } finally {
    lock.release();
  }
}

/**
 * The receiver's conversation `hello` opens, holding its destination. A refusal is the
 * source's error as it is (without what the destination keeps: those files are the other
 * transfer's), sent in place of the state; and this side's, rethrown.
 */
export async function holdingDestination<T>(volPath: string, ch: MirrorChannel, hello: Record<string, unknown>, client: string | undefined, fn: () => Promise<T>): Promise<T> {
  let lock: DestinationLock;
  try {
    lock = DestinationLock.acquire(volPath, String(hello.op), client);
  } catch (err) {
    const e = err as BusyError;
    try {
      await ch.send({ error: { code: e.code ?? 'internal', message: e.message, ...(e.hint ? { hint: e.hint } : {}) } });
    } catch {
      /* the connection is gone */
    }
    throw err;
  }
  try {
    return await fn();
  } finally {
    lock.release();
  }
}
