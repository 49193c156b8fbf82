// A tape as a directory (what tests and disk-based "virtual tapes" use): its tape files
// are DIR/file0001.tar, DIR/file0002.tar, ... in order. A tape file is written as
// DIR/.fileNNNN.tar.partial-<pid> and appears under its final name only when complete, so
// readers never see half a tape file; partials left by killed processes are ignored and
// removed by the next writer.
import { fsyncDirectory } from '../../fs/durable-file.js';
import { processExists, removeStaleTemp } from '../../fs/stale-temp.js';
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError, NotFoundError, fromSystemError } from '../../core/errors.js';
import { makeDirectories } from '../../core/make-dirs.js';

export type TapeKind = 'directory' | 'device';

export interface TapeFileEntry {
  /** 1-based position on the tape. */
  number: number;
  path: string;
  size: number;
}

const TAPE_FILE = /^file([0-9]{4,})\.tar$/;
const PARTIAL = /^\.file[0-9]{4,}\.tar\.partial-([0-9]+)$/;

export function tapeFileName(n: number): string {
  return `file${String(n).padStart(4, '0')}.tar`;
}

/**
 * What `p` is as a tape: a directory or a character device (a tape drive). A missing
 * path is a new directory when `create` (made by createPartial, when the first tape file
 * is written: a dump refused before that leaves nothing), else it is an error.
 */
export function tapeKind(p: string, create: boolean, reading = false): TapeKind {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      // a mistyped drive name must not become a directory under /dev
      if (!create || path.resolve(p).startsWith('/dev/')) {
        const hint = create ? 'give a tape device such as /dev/nst0' : reading ? 'mount the tape, or check the path: tape:DIR reads an existing tape directory or device' : 'give an existing tape directory or device, or --new-tape to make a new tape directory';
        throw new NotFoundError(`tape ${p}: no such directory or device`, hint);
      }
      return 'directory';
    }
    throw fromSystemError(err, p, 'opening the tape');
  }
  if (st.isDirectory()) return 'directory';
  // a pipe reads like a drive: front to back, no seeking (dd if=/dev/nst0 bs=10k | ..., or a named pipe)
  if (st.isCharacterDevice() || st.isFIFO()) return 'device';
  // a stream file given as a tape: a reader takes it as itself (verify has no --to)
  const single = reading ? `a stream file is read without tape: (verify ${p}, restore --from ${p})` : 'for a single file use --to FILE';
  throw new InvalidInputError(`tape ${p}: not a directory or a tape device`, `give a directory (tape:DIR) or a tape device such as /dev/nst0; ${single}`);
}

/**
 * Refuses, before anything of a set is read, a tape that cannot be read: a device is
 * opened and closed (no read, no write: a no-rewind drive does not move, a rewinding one
 * was at its start anyway), so a missing medium, a drive in use or one without
 * permission is named first; a pipe is only checked for permission (opening its read end
 * and closing it again could end the writer's output); a directory is listed.
 */
export function checkTapeReadable(p: string, kind: TapeKind): void {
  if (kind === 'directory') {
    listTapeFiles(p);
    return;
  }
  try {
    if (fs.statSync(p).isFIFO()) fs.accessSync(p, fs.constants.R_OK);
    else fs.closeSync(fs.openSync(p, 'r'));
  } catch (err) {
    throw fromSystemError(err, p, 'opening the tape device before reading the set');
  }
}

/** The complete tape files of a tape directory, in number order. */
export function listTapeFiles(dir: string): TapeFileEntry[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    throw fromSystemError(err, dir, 'listing the tape');
  }
  const files: TapeFileEntry[] = [];
  for (const name of names) {
    const m = TAPE_FILE.exec(name);
    if (!m || Number(m[1]) < 1) continue;
    const p = path.join(dir, name);
    try {
      files.push({ number: Number(m[1]), path: p, size: fs.statSync(p).size });
    } catch {
      /* removed meanwhile */
    }
  }
  return files.sort((a, b) => a.number - b.number);
}

export function usedBytes(files: TapeFileEntry[]): number {
  return files.reduce((n, f) => n + f.size, 0);
}

export function nextTapeFileNumber(files: TapeFileEntry[]): number {
  return files.length === 0 ? 1 : files[files.length - 1].number + 1;
}

/** Removes partial tape files whose writer process is gone (killed dumps). Never throws. */
export function removeStalePartials(dir: string): void {
  removeStaleTemp(dir, PARTIAL);
}

/**
 * Partial tape files of DIR whose writer is gone and which never got their final name
 * (one that did, killed between the link and the unlink, has a second link): what a
 * killed dump left unfinished. Read before removeStalePartials removes them.
 */
export function abandonedPartials(dir: string): string[] {
  const found: string[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return found;
  }
  for (const name of names) {
    const pid = Number(PARTIAL.exec(name)?.[1]);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || processExists(pid)) continue;
    const p = path.join(dir, name);
    try {
      if (fs.statSync(p).nlink === 1) found.push(p);
    } catch {
      /* removed meanwhile */
    }
  }
  return found;
}

/** Directories a writer made for a new tape: `dir` and its parents up to `top`, the first it made. */
export interface MadeDirectory {
  dir: string;
  top: string;
}

/**
 * Opens where the next tape file goes: a new partial file in a tape directory (after its
 * `files`), or the device itself. `made`: as createPartial's.
 */
export function openNextTapeFile(tape: string, kind: TapeKind, files: TapeFileEntry[]): { fd: number; partial: string | null; made: MadeDirectory | null; what: string } {
  if (kind === 'directory') {
    const created = createPartial(tape, nextTapeFileNumber(files));
    return { fd: created.fd, partial: created.path, made: created.made, what: `tape ${tape}` };
  }
  try {
    return { fd: fs.openSync(tape, fs.constants.O_WRONLY), partial: null, made: null, what: `tape device ${tape}` };
  } catch (err) {
    throw fromSystemError(err, tape, 'opening the tape device');
  }
}

/**
 * Creates a new partial tape file (numbered from `number` up to the first free name) and
 * opens it. `made`: the directories this call created for a new tape (--new-tape), which
 * the writer removes again if its dump fails (removeMadeDirectory).
 */
export function createPartial(dir: string, number: number): { path: string; fd: number; made: MadeDirectory | null } {
  let top: string | undefined;
  try {
    top = makeDirectories(dir); // a new tape (--new-tape)
  } catch (err) {
    throw fromSystemError(err, dir, 'creating the tape directory');
  }
  const made = top === undefined ? null : { dir: path.resolve(dir), top: path.resolve(top) };
  for (let n = number; ; n++) {
    const p = path.join(dir, `.${tapeFileName(n)}.partial-${process.pid}`);
    try {
      return { path: p, fd: fs.openSync(p, 'wx'), made };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        if (made) removeMadeDirectory(made);
        throw fromSystemError(err, dir, 'creating a tape file');
      }
    }
  }
}

/**
 * Removes the directories a failed dump made for a new tape, deepest first, each only
 * while it is empty: whatever else appeared in them meanwhile stays. Never throws.
 */
export function removeMadeDirectory(made: MadeDirectory): void {
  const inside = (d: string) => d === made.top || d.startsWith(made.top + path.sep);
  for (let d = made.dir; inside(d); d = path.dirname(d)) {
    try {
      fs.rmdirSync(d); // fails on a directory that is not empty
    } catch {
      return;
    }
    if (d === made.top) return;
  }
}

/**
 * Gives a complete (fsynced, closed) partial tape file its final name: the next free
 * number, never replacing a tape file another writer published meanwhile (hard link,
 * which fails on an existing name, then unlink). Returns the number it got.
 */
export function publishTapeFile(dir: string, partial: string): number {
  try {
    for (let n = nextTapeFileNumber(listTapeFiles(dir)); ; n++) {
      const final = path.join(dir, tapeFileName(n));
      try {
        fs.linkSync(partial, final);
        fs.unlinkSync(partial);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EEXIST') continue;
        if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
        // a file system without hard links: rename, having checked the name is free
        if (fs.existsSync(final)) continue;
        fs.renameSync(partial, final);
      }
      fsyncDirectory(dir);
      return n;
    }
  } catch (err) {
    throw fromSystemError(err, dir, 'publishing the tape file');
  }
}
