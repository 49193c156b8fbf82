// Where a volume's write journal lives and what its directory holds: `VOL.journal/`
// beside the volume, with segment files named after the sequence number of their first
// record (`0000000000000001.seg`, in order), `shipped.json` (how far a protect shipper's
// destination has acknowledged: the writer may delete the segments before it) and, after
// an overflow, `dirty.json` and `dirty.bits` (the blocks changed since the last
// acknowledged record: dirty-blocks.ts), and `id`: the journal's identity, random, made
// with it, which a protection destination records: a journal moved aside and started
// over, or one made for a copy of the volume, is another journal whose record numbers
// start again (a destination fed from the old one would take its later records as
// continuing the old ones, and lose the rest).
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, fromSystemError } from '../core/errors.js';
import { fsyncDirectory, writeFileDurably } from '../fs/durable-file.js';
import { readTextFile } from '../fs/text-file.js';
import { removeStaleTemp } from '../fs/stale-temp.js';

const SEGMENT = /^(\d{16})\.seg$/;
/** The blocks of the dirty set (dirty-blocks.ts). */
export const DIRTY_BITS = 'dirty.bits';

const ID_FILE = 'id';
const ID_TEXT = /^[0-9a-f]{32}$/;

/**
 * The journal's identity (32 hex digits), made the first time it is asked for (by the
 * server making the journal, or a shipper of a journal an older imgstream made): the first
 * to make it wins (a link, never a replacement), so every process reads the same one.
 */
export function journalIdOf(dir: string): string {
  const file = path.join(dir, ID_FILE);
  for (let attempt = 0; ; attempt++) {
    try {
      const text = fs.readFileSync(file, 'utf8').trim();
      if (!ID_TEXT.test(text)) throw new CorruptError(`${file}: not a journal identity`, 'move the journal aside and protect to a new destination (imgstream serve nbd VOL --journal starts a new one)');
      return text;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt > 0) throw fromSystemError(err, file, 'reading the journal\'s identity');
    }
    const tmp = `${file}.${process.pid}.tmp`;
    removeStaleTemp(dir, /^id\.(\d+)\.tmp$/); // a maker killed before its link
    try {
      const fd = fs.openSync(tmp, 'w', 0o644);
      try {
        fs.writeFileSync(fd, `${randomBytes(16).toString('hex')}\n`);
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      try {
        fs.linkSync(tmp, file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      fsyncDirectory(dir);
    } catch (err) {
      throw fromSystemError(err, file, 'making the journal\'s identity');
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
}

/**
 * The journal's identity as destinations know it: its id joined with the directory that
 * holds it (device and inode), so a copy of the journal (cp -r with its volume, a restore
 * of a backup, a move to another file system) is another journal, and a destination fed
 * from one refuses the other, whichever gets there first; a rename keeps it. `was` is the
 * id alone, as destinations fed before this knew it (they take the new one once).
 */
export function journalIdentity(dir: string): { id: string; was: string } {
  const was = journalIdOf(dir);
  let st: fs.BigIntStats;
  try {
    st = fs.statSync(dir, { bigint: true });
  } catch (err) {
    throw fromSystemError(err, dir, 'reading the journal');
  }
  return { id: createHash('sha256').update(`${was} ${st.dev} ${st.ino}`).digest('hex').slice(0, 32), was };
}

/** The journal directory of the volume at `volumePath`. */
export function journalDirOf(volumePath: string): string {
  return `${volumePath}.journal`;
}

export function segmentName(firstSeq: number): string {
  return `${String(firstSeq).padStart(16, '0')}.seg`;
}

export interface SegmentFile {
  /** Sequence number of its first record. */
  firstSeq: number;
  path: string;
}

/** The journal's segments, oldest first; [] when the directory is missing. */
export function listSegments(dir: string): SegmentFile[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw fromSystemError(err, dir, 'reading the journal');
  }
  const out: SegmentFile[] = [];
  for (const n of names) {
    const m = SEGMENT.exec(n);
    if (m) out.push({ firstSeq: Number(m[1]), path: path.join(dir, n) });
  }
  return out.sort((a, b) => a.firstSeq - b.firstSeq);
}

/** What shipped.json says: every record up to `journalTo` is held by `destination`. */
export interface ShippedMark {
  journalTo: number;
  intervalSeq: number;
  /** End of the last interval shipped (ms). */
  end: number;
  destination: string;
  /**
   * The last CP marker the shipper had read (the volume's generation and map root then):
   * the shipper's watch for changes outside the journal starts from it when the journal's
   * own markers up to `journalTo` were trimmed away.
   */
  cp?: { generation: number; mapRoot?: number; rootCrc?: number };
}

export function readShipped(dir: string): ShippedMark | null {
  return readJson<ShippedMark>(path.join(dir, 'shipped.json'));
}

export function writeShipped(dir: string, mark: ShippedMark): void {
  writeJsonAtomic(path.join(dir, 'shipped.json'), mark);
}

/**
 * After an overflow: every LBN changed since record `after` (the last one a destination
 * acknowledged), as of record `upTo`. The LBNs are in dirty.bits (loadDirtyBlocks), which
 * holds at least `blocks` of them; versions before it listed them here, as `lbns`.
 */
export interface DirtySet {
  after: number;
  upTo: number;
  blocks?: number;
  lbns?: number[];
  /** Snapshots taken in that span: a resync brings the disk as of its own moment, not theirs, so they cannot arrive (reported). */
  snapshots?: string[];
  /** Snapshots renamed in that span (their records dropped), in order: the resync carries them to the destination. */
  renames?: DirtyRename[];
  /** What changed blocks without records, when it was not the journal outgrowing its limit (an import). */
  reason?: string;
}

/** A snapshot renamed while the journal was overflowed, with its record's seq (the same rename read twice is one). */
export interface DirtyRename {
  from: string;
  to: string;
  seq: number;
}

/** Renames once each (one may be both in the dirty set and read back from the journal), in the order they were made. */
export function renamesInOrder(renames: DirtyRename[]): DirtyRename[] {
  const bySeq = new Map(renames.map((r) => [r.seq, r]));
  return [...bySeq.values()].sort((a, b) => a.seq - b.seq);
}

export function readDirty(dir: string): DirtySet | null {
  return readJson<DirtySet>(path.join(dir, 'dirty.json'));
}

export function writeDirty(dir: string, d: DirtySet): void {
  writeJsonAtomic(path.join(dir, 'dirty.json'), d);
}

export function removeDirty(dir: string): void {
  // dirty.json first: bits without it are a set that ended (or never began), ignored
  fs.rmSync(path.join(dir, 'dirty.json'), { force: true });
  fs.rmSync(path.join(dir, DIRTY_BITS), { force: true });
}

/** Blocks the dirty set holds, as dirty.json counts them. */
export function dirtyBlockCount(d: DirtySet): number {
  return d.blocks ?? d.lbns?.length ?? 0;
}

function readJson<T>(file: string): T | null {
  let text: string;
  try {
    text = readTextFile(file, 'a journal file');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw fromSystemError(err, file, 'reading');
  }
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CorruptError(`${file}: is not valid JSON`, 'the journal directory is damaged; remove the file to start over from a resync');
  }
}

/** Replaces `file` with `value` as JSON in one step (durable-file.ts). */
export function writeJsonAtomic(file: string, value: unknown): void {
  try {
    writeFileDurably(file, JSON.stringify(value));
  } catch (err) {
    throw fromSystemError(err, file, 'writing');
  }
}

export { fsyncDirectory as syncDirectory };
