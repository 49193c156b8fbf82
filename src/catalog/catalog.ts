// The catalog: the record of every complete dump (volume, level, base and top snapshots,
// date, where the stream is, counts, checksum), kept apart from the stream data. It is a
// JSON file replaced atomically (written beside, fsynced, renamed) under a lock: a
// handful of records per volume per day stays small, a crash leaves the old or the new
// file and never a torn one, and people can read it. No embedded database is needed for
// that, and every stream describes itself, so `catalog rebuild` can recreate it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BusyError, CorruptError, InvalidInputError, NotAVolumeError, NotFoundError, UsageError, fromSystemError } from '../core/errors.js';
import type { MediaPosition } from '../media/medium.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { removeStaleTemp, tempBeside } from '../fs/stale-temp.js';
import { fsyncDirectory } from '../fs/durable-file.js';
import { replacementTarget } from '../fs/link-target.js';
import { recordProblem } from './record-check.js';
import { readTextFile } from '../fs/text-file.js';
import { makeDirectories } from '../core/make-dirs.js';

export interface SnapshotRef {
  id: number;
  name: string;
  generation?: number;
}

/** True when `snap` (a snapshot on a volume) is the one `ref` recorded: the same id, and the same generation and creation time where recorded. */
export function isSnapshotOf(ref: SnapshotRef & { createdMs?: number }, snap: { id: number; generation: number; createdMs: number }): boolean {
  return ref.id === snap.id && (ref.generation === undefined || ref.generation === snap.generation) && (ref.createdMs === undefined || ref.createdMs === snap.createdMs);
}

/** Whether two records' snapshots are provably the same one: the same id, CP generation and creation time (records before 2026-12 lack the last two: never). */
export function sameSnapshotIdentity(a: SnapshotRef & { createdMs?: number }, b: SnapshotRef & { createdMs?: number }): boolean {
  return a.id === b.id && a.generation !== undefined && a.generation === b.generation && a.createdMs !== undefined && a.createdMs === b.createdMs;
}

export interface DumpRecord {
  /** The stream's id (header.streamId). */
  id: string;
  volume: { uuid: string; path: string | null };
  level: number;
  /**
   * Snapshots by identity: the id, and (recorded since 2026-12) the CP generation that took
   * them and, for the top, when: a restored replica shares its source's uuid and ids, so its
   * own snapshots (and dumps of them) are told from the source's by these.
   */
  base: (SnapshotRef & { createdMs?: number }) | null;
  top: SnapshotRef & { createdMs?: number };
  snapshots: string[];
  expression: string;
  /** When the dump was taken (header.created) and when it completed. */
  date: string;
  finished: string;
  media: MediaPosition;
  blocks: number;
  /** Raw bytes of the blocks carried, and bytes of the stream on the medium. */
  dataBytes: number;
  streamBytes: number;
  sha256: string;
  status: 'complete';
  /** The stream is encrypted (never any key material: that stays with the user). */
  encrypted?: true;
}

/**
 * The file. `version` changes only when a reader of the previous version would misread
 * the new one; fields added as optional (MediaPosition.endpoint and .pathStyle, an S3
 * object's store) keep version 1: older catalogs lack them and read as before, and an older
 * imgstream reading a newer catalog passes them over (and keeps them when it adds a record).
 */
interface CatalogFile {
  format: 'imgstream-catalog';
  version: 1;
  dumps: DumpRecord[];
}

export function defaultCatalogPath(): string {
  if (process.env.IMGSTREAM_CATALOG) return process.env.IMGSTREAM_CATALOG;
  const state = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(state, 'imgstream', 'catalog.json');
}

/** The catalog at `file` (as given: its directory must exist), or the default one (whose directory is created on the first record). */
export function openCatalogAt(file: string | undefined): Catalog {
  if (file !== undefined) return new Catalog(file);
  return new Catalog(defaultCatalogPath(), { createDirectory: !process.env.IMGSTREAM_CATALOG });
}

/** Two positions name one file or object, which holds one stream (tapes and stdout hold many, or none). Objects of one name on two stores are two. */
export function samePlace(a: MediaPosition, b: MediaPosition): boolean {
  return ['file', 's3', 'peer'].includes(a.kind) && a.kind === b.kind && a.location === b.location && a.stream === undefined && b.stream === undefined && a.endpoint === b.endpoint;
}

/** The longest catalog file name: its backup logs go in NAME.logs beside it, a name of at most 255 bytes. */
const CATALOG_NAME_MAX = 255 - '.logs'.length;

export interface CatalogOptions {
  /** Create the catalog's directory when it is missing (the default path); a path the user gave must be in a directory that exists. */
  createDirectory?: boolean;
}

/** Text that was a catalog, however damaged (its format name or its records' keys), or empty (touch, mktemp). */
function looksLikeCatalog(text: string): boolean {
  return text.trim() === '' || text.includes('imgstream-catalog') || (text.includes('"dumps"') && text.includes('"media"'));
}

export class Catalog {
  constructor(
    readonly file: string,
    private readonly opts: CatalogOptions = {},
  ) {}

  read(): DumpRecord[] {
    const text = this.readText();
    if (text === null) return [];
    let c: CatalogFile;
    try {
      c = JSON.parse(text) as CatalogFile;
      if (c.format !== 'imgstream-catalog' || !Array.isArray(c.dumps)) throw new Error('not a catalog');
    } catch {
      // a file of another kind (a --catalog typo naming some other file) is no damaged
      // catalog: catalog rebuild, which replaces a damaged one, must never be pointed at it
      if (!looksLikeCatalog(text)) throw new NotAVolumeError(`${this.file}: not an imgstream catalog: it holds something else`, 'give --catalog the catalog file, or a path that does not exist yet for a new one');
      throw new CorruptError(`${this.file}: not a readable imgstream catalog`, 'rebuild it with: imgstream catalog rebuild --from SOURCE...');
    }
    // a newer version's catalog is not rewritten (downgraded) by this one
    if (c.version !== 1) throw new NotAVolumeError(`${this.file}: a catalog of version ${String(c.version)}, which this imgstream does not read (it reads version 1)`, 'use the imgstream version that wrote it');
    c.dumps.forEach((d, i) => {
      const bad = recordProblem(d);
      if (bad) throw new CorruptError(`${this.file}: dump record ${i + 1} of ${c.dumps.length} is malformed: ${bad}`, 'correct or remove it, or rebuild the catalog with: imgstream catalog rebuild --from SOURCE...');
    });
    return c.dumps;
  }

  /**
   * The catalog file's text, null when there is none yet. Opened without blocking and
   * checked to be a regular file before anything is read: a FIFO would wait for a writer
   * forever, a device would never end.
   */
  private readText(): string | null {
    if (this.file.trim() === '') throw new InvalidInputError('the catalog path is empty', 'give --catalog FILE, or leave it out for the default');
    if (this.file.endsWith('/')) throw new InvalidInputError(`${this.file}: names a directory (it ends in "/"), not a catalog file`, 'give --catalog a file name, e.g. DIR/catalog.json');
    let fd: number;
    try {
      fd = fs.openSync(this.file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        // no catalog yet, or a path given in a directory that is not there (a typo: "no dumps" would mislead)
        if (!this.opts.createDirectory && !fs.existsSync(path.dirname(path.resolve(this.file)))) {
          throw new NotFoundError(`${this.file}: no such directory ${path.dirname(this.file)}`, 'give --catalog a file in a directory that exists');
        }
        return null;
      }
      throw fromSystemError(err, this.file, 'reading the catalog');
    }
    try {
      const st = fs.fstatSync(fd);
      if (st.isDirectory()) throw new InvalidInputError(`${this.file}: is a directory, not a catalog file`, 'give --catalog a file name, e.g. DIR/catalog.json');
      if (!st.isFile()) throw new InvalidInputError(`${this.file}: is not a regular file (a ${kindOf(st)}), so it cannot be the catalog`, 'give --catalog a regular file');
      return readTextFile(fd, 'a catalog', this.file, 'give --catalog another file');
    } catch (err) {
      throw fromSystemError(err, this.file, 'reading the catalog');
    } finally {
      fs.closeSync(fd);
    }
  }

  /**
   * The catalog can be replaced where it is: its name fits with the temporary and the
   * backup logs beside it, and its directory exists (or, for the default path, can be
   * created). Returns the directory, null when it is to be created.
   */
  private checkPlace(): string | null {
    const base = path.basename(this.file);
    if (Buffer.byteLength(base) > CATALOG_NAME_MAX) throw new InvalidInputError(`${this.file}: file name too long for a catalog (at most ${CATALOG_NAME_MAX} bytes: its backup logs go in NAME.logs beside it)`, 'choose a shorter name');
    const dir = path.dirname(path.resolve(this.file));
    let st: fs.Stats;
    try {
      st = fs.statSync(dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && this.opts.createDirectory) return null;
      if (code === 'ENOENT') throw new NotFoundError(`${this.file}: no such directory ${path.dirname(this.file)}`, 'create the directory first, or give --catalog a file in one that exists');
      throw fromSystemError(err, this.file, 'opening the catalog for writing');
    }
    if (!st.isDirectory()) throw new InvalidInputError(`${this.file}: ${path.dirname(this.file)} is not a directory`, 'give --catalog a path in a directory');
    return dir;
  }

  /** Before a dump writes anything: the catalog reads, and its directory takes a new file (a dump recorded nowhere would be hours lost). */
  checkWritable(): void {
    this.read();
    replacementTarget(this.file); // a symbolic link to a file in a directory that does not exist: refused now, not when recording
    let dir = this.checkPlace();
    if (dir === null) {
      dir = path.dirname(path.resolve(this.file));
      while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir); // created on the first record
      if (!fs.statSync(dir).isDirectory()) throw new InvalidInputError(`${this.file}: ${dir} is not a directory`, 'give --catalog a path in a directory');
    }
    try {
      fs.accessSync(dir, fs.constants.W_OK);
      if (fs.existsSync(this.file)) fs.accessSync(this.file, fs.constants.R_OK | fs.constants.W_OK);
    } catch (err) {
      throw fromSystemError(err, this.file, 'opening the catalog for writing');
    }
  }

  /**
   * Read-modify-write under the catalog lock, replacing the file atomically. With
   * `replaceUnreadable` (catalog rebuild), a damaged catalog is started afresh, the
   * damaged file kept beside it (a hand edit gone wrong still holds every other record):
   * its name goes to `keptAside`.
   */
  update(change: (dumps: DumpRecord[]) => DumpRecord[], opts: { replaceUnreadable?: boolean; keptAside?: (file: string) => void } = {}): DumpRecord[] {
    this.readText(); // the path names no directory, FIFO or device
    if (this.checkPlace() === null) {
      try {
        makeDirectories(path.dirname(this.file));
      } catch (err) {
        throw fromSystemError(err, path.dirname(this.file), 'creating the catalog directory');
      }
    }
    // a catalog shared through a symbolic link is replaced where the link points (and locked there)
    const file = replacementTarget(this.file);
    const { dir, prefix } = tempBeside(file, 'new');
    const lock = lockCatalog(file, fs.statSync(dir));
    try {
      let current: DumpRecord[];
      let damaged: string | null = null;
      try {
        current = this.read();
      } catch (err) {
        if (!opts.replaceUnreadable || !(err instanceof CorruptError)) throw err;
        current = [];
        // (an empty file, as touch or mktemp leave it, holds nothing to keep)
        if (fs.statSync(file).size > 0) damaged = `${file}.damaged-${new Date().toISOString().replace(/[-:]/g, '')}`;
      }
      const dumps = change(current);
      // never write a catalog that would then be refused
      dumps.forEach((d, i) => {
        const bad = recordProblem(d);
        if (bad) throw new InvalidInputError(`${this.file}: refusing to record a malformed dump record (${i + 1} of ${dumps.length}): ${bad}`);
      });
      removeStaleTemp(dir, prefix); // of writers killed before their rename
      removeStaleTemp(dir, `${path.basename(file)}.new-`); // as earlier versions named them
      const tmp = path.join(dir, `${prefix}${process.pid}`);
      const body: CatalogFile = { format: 'imgstream-catalog', version: 1, dumps };
      try {
        const fd = fs.openSync(tmp, 'w');
        try {
          fs.writeSync(fd, `${JSON.stringify(body, null, 1)}\n`);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        // a second link first: the damaged catalog stays whole under its new name whatever happens next
        if (damaged !== null) fs.linkSync(file, damaged);
        fs.renameSync(tmp, file);
        fsyncDirectory(dir);
        if (damaged !== null) opts.keptAside?.(damaged);
      } catch (err) {
        fs.rmSync(tmp, { force: true });
        throw fromSystemError(err, this.file, 'writing the catalog');
      }
      return dumps;
    } finally {
      lock.release();
    }
  }

  /** Records a dump; a record of another dump at the same file or object is dropped (the place holds only the newest: dump --force replaced it). */
  add(rec: DumpRecord): void {
    this.update((dumps) => [...dumps.filter((d) => d.id !== rec.id && !samePlace(d.media, rec.media)), rec]);
  }

  get(id: string): DumpRecord {
    const all = this.read();
    const list = `imgstream catalog list --catalog ${this.file} lists them`;
    if (id === '') throw new UsageError('the dump id is empty', `give a dump's id, or a prefix of it no other dump's has: ${list}`);
    const hit = all.filter((d) => d.id === id || d.id.startsWith(id));
    if (hit.length > 1) {
      // each shown as long as it takes to tell it from the others (catalog list shows 8 characters)
      const ids = hit.map((d) => d.id).sort();
      const common = (a: string, b: string) => [...a].findIndex((c, i) => c !== b[i]);
      const width = Math.max(8, ...ids.slice(1).map((x, i) => common(ids[i], x) + 1));
      const shown = ids.slice(0, 4).map((x) => x.slice(0, width)).join(', ') + (ids.length > 4 ? ', …' : '');
      throw new UsageError(`${this.file}: ${hit.length} dumps have ids beginning "${id}": ${shown}`, 'give more of the id');
    }
    if (hit.length === 0) throw new NotFoundError(`${this.file}: no dump "${id}"`, `list them with: imgstream catalog list --catalog ${this.file}`);
    return hit[0];
  }

  /**
   * Dumps of one volume in the order of their top snapshots, oldest first: the order of
   * the moments they hold. Not by date: two dumps run at once stamp their dates when each
   * has planned, which may be in the other order than their snapshots were taken.
   */
  forVolume(uuid: string): DumpRecord[] {
    return this.read()
      .filter((d) => d.volume.uuid === uuid)
      .sort((a, b) => a.top.id - b.top.id || a.date.localeCompare(b.date));
  }
}

function kindOf(st: fs.Stats): string {
  if (st.isFIFO()) return 'FIFO';
  if (st.isSocket()) return 'socket';
  if (st.isCharacterDevice()) return 'character device';
  if (st.isBlockDevice()) return 'block device';
  return 'special file';
}

/** How long a writer waits for another one's record (a read, a write, an fsync: milliseconds) before it says busy. */
const CATALOG_LOCK_WAIT_MS = 15_000;

/**
 * The catalog's lock, waited for while another live process holds it: dumps that end at
 * the same time (cron jobs of several volumes share the default catalog) each get their
 * record in, one after the other, instead of the later one failing with busy.
 */
function lockCatalog(file: string, dirStat: fs.Stats): VolumeLock {
  const deadline = Date.now() + CATALOG_LOCK_WAIT_MS;
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  for (;;) {
    try {
      return VolumeLock.acquire(file, dirStat, 'catalog');
    } catch (err) {
      if (!(err instanceof BusyError) || Date.now() > deadline) throw err;
      Atomics.wait(sleeper, 0, 0, 20);
    }
  }
}
