// One process at a time works on a volume. The lock is a file named after the volume's
// device and inode in a runtime directory, holding the owner's pid and process start
// time, so a lock left by a killed process (kill -9) is recognised as stale and taken
// over at once: no stale lock ever blocks the next command.
//
// The same locks serve for what is no one file's inode (acquireNamed: a mirror
// destination NAME in a directory, which a first transfer has not created yet).
//
// Lock file format: the first line is "PID STARTTIME"; a holder that says more adds a
// space after it and then lines of KEY=VALUE:
//   control=PATH    its control socket (next to the lock file, <dev>-<ino>.ctl), a server (see src/control)
//   served=rw|ro    it serves the volume read-write or read-only
//   disk=kept       it changes no block of the disk (a read-only open, a dump: snapshots at most)
//   (a named lock's holder: what it does, see src/mirror/destination-lock.ts)
// A process holds each lock once: a peer daemon serves many connections in one process,
// and a lock file naming this process is this process's (taken over only when nothing
// here holds it: a pid reused after a crash). Two of its connections opening one volume
// (a replicate pull of a NAME a mirror update is writing) are refused as another process
// is, and the first to finish does not remove the lock the other still works under.
// Older versions split the file at spaces and compare the second field with the start
// time: the space keeps that field exact, so they never take a server's lock for stale.
//
// Where: /run/lock/imgstream by default (where /run/lock is), not under $TMPDIR, which a
// service may have to itself (systemd's PrivateTmp) and a shell may set otherwise: two
// processes that looked in different directories both opened a served volume, and the
// second's CP wrote over the server's map. A process given IMGSTREAM_LOCK_DIR takes each
// lock in that directory and a copy in the default one (a guard): a process with another
// lock directory, or none, finds it held there and is refused. Each lock has a guard in
// $TMPDIR/imgstream-locks too (where that is: an earlier version, whose default it was,
// made it): a server one of them runs is found while an upgrade happens under it, and
// each of them finds a server of this one.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BusyError, ImgstreamError, InvalidInputError, IoError } from '../core/errors.js';
import { removeStaleTemp } from '../fs/stale-temp.js';
import { makeDirectories } from '../core/make-dirs.js';

let sharedDir: string | null = null;

/** The default lock directory: /run/lock/imgstream where /run/lock is a directory this process may write in, else $TMPDIR/imgstream-locks. */
function sharedLockDir(): string {
  if (sharedDir === null) {
    let runLock = false;
    try {
      fs.accessSync('/run/lock', fs.constants.W_OK | fs.constants.X_OK);
      runLock = fs.statSync('/run/lock').isDirectory();
    } catch {
      // none here (not Linux, or a container without it)
    }
    sharedDir = runLock ? '/run/lock/imgstream' : path.join(os.tmpdir(), 'imgstream-locks');
  }
  return sharedDir;
}

function lockDir(): string {
  // an empty value is no value (IMGSTREAM_LOCK_DIR= put the locks in the working directory, where another shell's commands never looked)
  return process.env.IMGSTREAM_LOCK_DIR || sharedLockDir();
}

/** Where the lock file `file` (in lockDir()) has its guards: the same name in the default directory and in the one of earlier versions, but where it is itself. */
function guardsOf(file: string): string[] {
  const here = path.resolve(path.dirname(file));
  const dirs = [...new Set([sharedLockDir(), path.join(os.tmpdir(), 'imgstream-locks')].map((d) => path.resolve(d)))];
  return dirs.filter((d) => d !== here).map((d) => path.join(d, path.basename(file)));
}

function startTime(pid: number): string | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** A zombie (killed, not yet reaped by its parent) holds nothing any more: its files are closed. */
function zombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0];
    return state === 'Z' || state === 'X';
  } catch {
    return false;
  }
}

/** Commands that take a second word ("serve nbd"); "protect" alone is a command too. */
const TOPICS = new Set(['catalog', 'mirror', 'replicate', 'serve', 'snapshot', 'tape', 'volume']);

/** The imgstream command a process runs, "protect" or "serve nbd", from its arguments; '' when unknown. */
function commandOf(pid: number): string {
  try {
    const [cmd = '', sub = ''] = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(2);
    if (!/^[a-z]+$/.test(cmd)) return '';
    return (TOPICS.has(cmd) && /^[a-z]+$/.test(sub)) || (cmd === 'protect' && sub === 'status') ? `${cmd} ${sub}` : cmd;
  } catch {
    return '';
  }
}

function alive(pid: number, start: string): boolean {
  const now = startTime(pid);
  if (now !== null) return now === start && !zombie(pid);
  try {
    process.kill(pid, 0);
    return !fs.existsSync('/proc/self/stat'); // no /proc: trust kill(0)
  } catch {
    return false;
  }
}

/** Who holds a volume's lock: a live process, and where it answers requests if it does. */
export interface LockHolder {
  pid: number;
  /** Its control socket (a server): other commands send it their requests. */
  control?: string;
  /** How it serves the volume. */
  served?: 'rw' | 'ro';
  /** It journals every write (served with --journal): a CP marker follows each of its CPs. */
  journal?: boolean;
  /** It changes no block of the disk (opened read-only, or a dump: it takes and deletes snapshots at most). */
  keepsDisk?: boolean;
}

/** A live process other than this one that holds a lock, as taking the lock found it. */
export interface LockOwner {
  pid: number;
  /** The imgstream command it runs ("mirror update"), '' when unknown. */
  command: string;
  /** The KEY=VALUE lines of its lock file. */
  fields: ReadonlyMap<string, string>;
}

interface LockContents {
  pid: number;
  start: string;
  fields: Map<string, string>;
}

function parseLock(text: string): LockContents {
  const [first = '', ...rest] = text.split('\n');
  const [pid = '', start = '0'] = first.trim().split(' ');
  const fields = new Map<string, string>();
  for (const line of rest) {
    const eq = line.indexOf('=');
    if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
  }
  return { pid: Number(pid), start, fields };
}

/** A lock file being created is FILE.new-PID first. */
const NEW_INFIX = '.new-';

/** How long a lock file without a pid counts as being written rather than stale. */
const EMPTY_LOCK_GRACE_MS = 5_000;

/**
 * Creates `file` holding `text`, whole, unless it exists (false). The text is written to
 * a file of this process first and linked into place, so no other process ever reads the
 * lock file empty: created, then written, a reader between the two would take it for a
 * stale lock, remove it and take the lock too (two holders: a fold of a protection
 * destination's base ran under a restore that held it).
 */
function createWhole(file: string, text: string): boolean {
  const tmp = `${file}${NEW_INFIX}${process.pid}`;
  fs.writeFileSync(tmp, text, { mode: 0o666 });
  try {
    fs.linkSync(tmp, file);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  // a lock directory on a file system without hard links: created, then written
  try {
    fs.writeFileSync(file, text, { flag: 'wx', mode: 0o666 });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/**
 * A lock directory that cannot hold lock files (IMGSTREAM_LOCK_DIR naming a regular file,
 * a directory not writable or on a read-only file system) as one line naming it: it was an
 * internal error ("ENOTDIR ... this is a bug"). Taken before anything is opened for
 * writing, so nothing has changed. Any other error is left as it is.
 */
function lockDirError(err: unknown, dir: string): unknown {
  if (err instanceof ImgstreamError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  const given = process.env.IMGSTREAM_LOCK_DIR || undefined;
  const named = given !== undefined && path.resolve(dir) === path.resolve(given) ? `IMGSTREAM_LOCK_DIR=${given}` : `lock directory ${dir}`;
  const hint = given !== undefined ? 'point IMGSTREAM_LOCK_DIR at a directory this user may write in, or unset it' : 'make it a directory this user may write in';
  switch (code) {
    case 'ENOTDIR':
    case 'EEXIST':
      return new InvalidInputError(`${named}: not a directory (a part of the path is a file)`, hint);
    case 'EACCES':
    case 'EPERM':
      return new IoError(`${named}: permission denied while taking a lock there`, hint);
    case 'EROFS':
      return new IoError(`${named}: read-only file system`, hint);
    case 'ENOSPC':
    case 'EDQUOT':
      return new IoError(`${named}: no space left for a lock file`, hint);
    default:
      return err;
  }
}

/** The text of the first of `files` there, the lock file before its guards (throws when none is there). */
function readFirst(files: string[]): string {
  for (const f of files.slice(0, -1)) {
    try {
      return fs.readFileSync(f, 'utf8');
    } catch {
      // the next one
    }
  }
  return fs.readFileSync(files[files.length - 1], 'utf8');
}

function lockFileOf(st: fs.Stats): string {
  return path.join(lockDir(), `${st.dev}-${st.ino}.lock`);
}

/** The lock files this process holds. */
const heldHere = new Set<string>();

/** The locks this process holds, released by one exit listener (one per lock went past Node's limit of 10: a multiplexed dump of several volumes to several tapes printed a MaxListenersExceededWarning). */
const liveLocks = new Set<VolumeLock>();
let exitListening = false;

function releaseAtExit(lock: VolumeLock): void {
  liveLocks.add(lock);
  if (exitListening) return;
  exitListening = true;
  process.once('exit', () => {
    for (const l of [...liveLocks]) l.release();
  });
}

export class VolumeLock {
  private released = false;
  /** The copies of this lock in the default directories (see the top) that could be written. */
  private guards: VolumeLock[] = [];
  private constructor(readonly file: string, private token: string) {
    heldHere.add(file);
    releaseAtExit(this);
  }

  /** The live process holding the lock of the volume at `volumePath`, or null (none, or a stale lock). */
  static holder(volumePath: string): LockHolder | null {
    const h = VolumeLock.lastHolder(volumePath);
    if (!h?.alive) return null;
    const { alive: _alive, ...holder } = h;
    return holder;
  }

  /** Who the volume's lock file names, alive or not (a process killed with -9 leaves it), or null (no lock file). */
  static lastHolder(volumePath: string): (LockHolder & { alive: boolean }) | null {
    let text: string;
    try {
      const file = lockFileOf(fs.statSync(volumePath));
      // (a holder with another lock directory, or of an earlier version, is found by a guard)
      text = readFirst([file, ...guardsOf(file)]);
    } catch {
      return null;
    }
    const c = parseLock(text);
    if (!(c.pid > 0)) return null;
    const served = c.fields.get('served');
    return { pid: c.pid, alive: alive(c.pid, c.start), control: c.fields.get('control') || undefined, served: served === 'rw' || served === 'ro' ? served : undefined, journal: c.fields.get('journal') === '1', keepsDisk: c.fields.get('disk') === 'kept' };
  }

  /** Where the holder of this lock listens for control requests: next to the lock file. */
  get controlPath(): string {
    return this.file.replace(/\.lock$/, '.ctl');
  }

  /**
   * Records in the lock file that this process answers control requests on `socket` (null:
   * no longer). The file is replaced whole (rename), so a reader sees the old or the new.
   */
  advertise(socket: string | null, served: 'rw' | 'ro' = 'rw', journal = false): void {
    const first = this.token.split('\n')[0].trim();
    const next = socket === null ? (journal ? `${first} \njournal=1\n` : first) : `${first} \ncontrol=${socket}\nserved=${served}\n${journal ? 'journal=1\n' : ''}`;
    if (fs.readFileSync(this.file, 'utf8') !== this.token) throw new BusyError(`${this.file}: lost the lock`, 'another process removed it');
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, next, { mode: 0o666 });
    fs.renameSync(tmp, this.file);
    this.token = next;
    for (const g of this.guards) g.advertise(socket, served, journal);
  }

  /** `keepsDisk`: the holder changes no block of the disk (disk=kept, see the top). */
  static acquire(volumePath: string, st: fs.Stats, what = 'volume', keepsDisk = false): VolumeLock {
    const token = `${process.pid} ${startTime(process.pid) ?? '0'}${keepsDisk ? ' \ndisk=kept\n' : ''}`;
    return VolumeLock.take(lockFileOf(st), token, `${volumePath}: could not lock the ${what}`, (owner) => {
      // a lock file without a pid is one an older version is still writing (it created the file, then wrote it)
      if (!owner) return new BusyError(`${volumePath}: ${what} is being locked by another imgstream process`, 'try again');
      if (owner.fields.has('control')) {
        const hint = owner.fields.get('served') === 'ro' ? 'it serves the volume read-only: stop the server first' : 'write through its NBD export, or stop the server first';
        return new BusyError(`${volumePath}: ${what} is being served by imgstream process ${owner.pid}`, hint);
      }
      return new BusyError(`${volumePath}: ${what} is in use by imgstream process ${owner.pid}${owner.command ? ` (${owner.command})` : ''}`, 'wait for it to finish, or stop it');
    });
  }

  /**
   * A lock on what is no one file's inode, named by `key` (letters, digits, '.', '_', '-';
   * the lock file is KEY.lock): a mirror destination NAME in a directory, before a first
   * transfer creates it. `fields` go into the lock file, for whoever finds it held;
   * `refuse` makes the error then (owner null: a lock file still being written).
   * Stale locks are taken over as a volume's are. A lock this process holds counts as
   * stale, as a volume's does: a caller with several holders in one process keeps them apart.
   */
  static acquireNamed(key: string, fields: Record<string, string>, refuse: (owner: LockOwner | null) => BusyError): VolumeLock {
    if (!/^[\w.-]+$/.test(key)) throw new Error(`invalid lock name ${key}`);
    const lines = Object.entries(fields).map(([k, v]) => `${k}=${v.replace(/[\r\n]+/g, ' ')}\n`);
    const token = `${process.pid} ${startTime(process.pid) ?? '0'}${lines.length ? ` \n${lines.join('')}` : ''}`;
    return VolumeLock.take(path.join(lockDir(), `${key}.lock`), token, `${key}: could not take the lock`, refuse);
  }

  /** Creates the lock file `file` holding `token`, taking over a stale one, and (`guarded`) its guards; `refuse` makes the error when a live process holds it. */
  private static take(file: string, token: string, exhausted: string, refuse: (owner: LockOwner | null) => BusyError, guarded = true): VolumeLock {
    try {
      return VolumeLock.takeIn(file, token, exhausted, refuse, guarded);
    } catch (err) {
      throw lockDirError(err, path.dirname(file));
    }
  }

  private static takeIn(file: string, token: string, exhausted: string, refuse: (owner: LockOwner | null) => BusyError, guarded: boolean): VolumeLock {
    makeDirectories(path.dirname(file), 0o1777);
    if (heldHere.has(file)) {
      let fields: ReadonlyMap<string, string> = new Map();
      try {
        fields = parseLock(fs.readFileSync(file, 'utf8')).fields;
      } catch {
        /* its fields are only for the message */
      }
      throw refuse({ pid: process.pid, command: commandOf(process.pid), fields });
    }
    for (let attempt = 0; attempt < 5; attempt++) {
      if (createWhole(file, token)) {
        removeStaleTemp(path.dirname(file), `${path.basename(file)}${NEW_INFIX}`); // of processes killed while locking
        const lock = new VolumeLock(file, token);
        try {
          for (const guard of guarded ? guardsOf(file) : []) {
            const g = VolumeLock.takeGuard(guard, token, exhausted, refuse);
            if (g !== null) lock.guards.push(g);
          }
        } catch (err) {
          lock.release();
          throw err;
        }
        return lock;
      }
      let holder = '';
      let age = Infinity;
      try {
        holder = fs.readFileSync(file, 'utf8');
        age = Date.now() - fs.statSync(file).mtimeMs;
      } catch {
        continue; // released meanwhile
      }
      const { pid, start, fields } = parseLock(holder);
      // young without a pid: being written; it is stale only once it stays empty
      if (!(pid > 0) && age < EMPTY_LOCK_GRACE_MS) throw refuse(null);
      if (pid > 0 && alive(pid, start) && pid !== process.pid) throw refuse({ pid, command: commandOf(pid), fields });
      // stale (its process is gone): take it over
      try {
        if (fs.readFileSync(file, 'utf8') === holder) fs.unlinkSync(file);
      } catch {
        /* someone else cleaned it */
      }
    }
    throw new BusyError(exhausted, 'another imgstream process keeps taking it');
  }

  /**
   * The guard `guard` of a lock (see the top), or null where its directory cannot be
   * written (a read-only /run: the lock directory given is all there is). The directory of
   * earlier versions is not made: where it is not, none of them ran here since /tmp was
   * last emptied (and the user's $TMPDIR is left as it was).
   */
  private static takeGuard(guard: string, token: string, exhausted: string, refuse: (owner: LockOwner | null) => BusyError): VolumeLock | null {
    try {
      const dir = path.dirname(guard);
      if (dir === path.resolve(sharedLockDir())) makeDirectories(dir, 0o1777);
      fs.accessSync(dir, fs.constants.W_OK);
    } catch {
      return null;
    }
    return VolumeLock.take(guard, token, exhausted, refuse, false);
  }

  release(): void {
    for (const g of this.guards) g.release();
    if (this.released) return;
    this.released = true;
    heldHere.delete(this.file);
    liveLocks.delete(this);
    try {
      if (fs.readFileSync(this.file, 'utf8') === this.token) fs.unlinkSync(this.file);
    } catch {
      /* gone already */
    }
  }
}
