// The catalog: the record of every complete dump (volume, level, base and top snapshots,
// date, where the stream is, counts, checksum), kept apart from the stream data. It is a
// JSON file replaced atomically (written beside, fsynced, renamed) under a lock: a
// handful of records per volume per day stays small, a crash leaves the old or the new
// file and never a torn one, and people can read it. No embedded database is needed for
// that, and every stream describes itself, so `catalog rebuild` can recreate it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CorruptError, InvalidInputError, NotFoundError, fromSystemError } from '../core/errors.js';
import type { MediaPosition } from '../media/medium.js';
import { VolumeLock } from '../volume/volume-lock.js';

export interface DumpRecord {
  /** The stream's id (header.streamId). */
  id: string;
  volume: { uuid: string; path: string | null };
  level: number;
  base: { id: number; name: string } | null;
  top: { id: number; name: string };
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

/** Two positions name one file or object, which holds one stream (tapes and stdout hold many, or none). */
function samePlace(a: MediaPosition, b: MediaPosition): boolean {
  return ['file', 's3', 'peer'].includes(a.kind) && a.kind === b.kind && a.location === b.location && a.stream === undefined && b.stream === undefined;
}

function wellFormed(d: DumpRecord): boolean {
  const r = d as unknown as Record<string, unknown> | null;
  if (typeof r !== 'object' || r === null) return false;
  const vol = r.volume as Record<string, unknown> | null;
  const top = r.top as Record<string, unknown> | null;
  return typeof r.id === 'string' && typeof r.date === 'string' && Number.isInteger(r.level) && typeof vol === 'object' && vol !== null && typeof vol.uuid === 'string' && typeof top === 'object' && top !== null && typeof top.name === 'string' && typeof top.id === 'number';
}

export class Catalog {
  constructor(readonly file: string) {}

  read(): DumpRecord[] {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw fromSystemError(err, this.file, 'reading the catalog');
    }
    let c: CatalogFile;
    try {
      c = JSON.parse(text) as CatalogFile;
      if (c.format !== 'imgstream-catalog' || !Array.isArray(c.dumps)) throw new Error('not a catalog');
    } catch {
      throw new CorruptError(`${this.file}: not a readable imgstream catalog`, 'rebuild it with: imgstream catalog rebuild --from SOURCE...');
    }
    // a newer version's catalog is not rewritten (downgraded) by this one
    if (c.version !== 1) throw new InvalidInputError(`${this.file}: a catalog of version ${String(c.version)}, which this imgstream does not read (it reads version 1)`, 'use the imgstream version that wrote it');
    const bad = c.dumps.findIndex((d) => !wellFormed(d));
    if (bad >= 0) throw new CorruptError(`${this.file}: dump record ${bad + 1} of ${c.dumps.length} is malformed`, 'rebuild it with: imgstream catalog rebuild --from SOURCE...');
    return c.dumps;
  }

  /** Before a dump writes anything: the catalog reads, and its directory takes a new file (a dump recorded nowhere would be hours lost). */
  checkWritable(): void {
    if (this.file.trim() === '') throw new InvalidInputError('the catalog path is empty', 'give --catalog FILE, or leave it out for the default');
    this.read();
    let dir = path.dirname(path.resolve(this.file));
    while (!fs.existsSync(dir) && path.dirname(dir) !== dir) dir = path.dirname(dir); // created on the first record
    try {
      fs.accessSync(dir, fs.constants.W_OK);
      if (fs.existsSync(this.file)) fs.accessSync(this.file, fs.constants.R_OK | fs.constants.W_OK);
    } catch (err) {
      throw fromSystemError(err, this.file, 'opening the catalog for writing');
    }
    if (!fs.statSync(dir).isDirectory()) throw new InvalidInputError(`${this.file}: ${dir} is not a directory`, 'give --catalog a path in a directory');
  }

  /**
   * Read-modify-write under the catalog lock, replacing the file atomically. With
   * `replaceUnreadable` (catalog rebuild), a damaged catalog is started afresh.
   */
  update(change: (dumps: DumpRecord[]) => DumpRecord[], opts: { replaceUnreadable?: boolean } = {}): DumpRecord[] {
    const dir = path.dirname(this.file);
    try {
      fs.mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw fromSystemError(err, dir, 'creating the catalog directory');
    }
    const lock = VolumeLock.acquire(this.file, fs.statSync(dir), 'catalog');
    try {
      let current: DumpRecord[];
      try {
        current = this.read();
      } catch (err) {
        if (!opts.replaceUnreadable || !(err instanceof CorruptError)) throw err;
        current = [];
      }
      const dumps = change(current);
      const tmp = `${this.file}.new-${process.pid}`;
      const body: CatalogFile = { format: 'imgstream-catalog', version: 1, dumps };
      try {
        const fd = fs.openSync(tmp, 'w');
        fs.writeSync(fd, `${JSON.stringify(body, null, 1)}\n`);
        fs.fsyncSync(fd);
        fs.closeSync(fd);
        fs.renameSync(tmp, this.file);
        const dfd = fs.openSync(dir, 'r');
        fs.fsyncSync(dfd);
        fs.closeSync(dfd);
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
    const hit = all.filter((d) => d.id === id || d.id.startsWith(id));
    if (hit.length !== 1) throw new NotFoundError(`${this.file}: ${hit.length ? 'more than one dump matches' : 'no dump'} "${id}"`, 'list them with: imgstream catalog list');
    return hit[0];
  }

  /** Dumps of one volume, oldest first. */
  forVolume(uuid: string): DumpRecord[] {
    return this.read()
      .filter((d) => d.volume.uuid === uuid)
      .sort((a, b) => a.date.localeCompare(b.date) || a.top.id - b.top.id);
  }
}
