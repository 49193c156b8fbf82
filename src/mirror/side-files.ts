// The files a mirror destination keeps beside its volume NAME while a transfer is under
// way (receiver.ts): `.NAME.mirror-new`, the volume a first transfer builds (linked into
// place after its CP); `.NAME.mirror-stage`, blocks for the switching CP's journal;
// `.NAME.mirror-transfer`, how far the transfer got (to resume), written whole through
// `.NAME.mirror-saving`. What they hold when a transfer stopped, and dropping them
// (`mirror abandon`, or a transfer that failed with nothing to resume from). And the
// names a destination may have: checked before any transfer starts.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { BusyError, FormatVersionError, InvalidInputError, NotAVolumeError } from '../core/errors.js';
import { tempBeside } from '../fs/stale-temp.js';
import { refuseDanglingLink } from '../fs/link-target.js';
import { Volume } from '../volume/volume.js';
import { refuseNonVolumeFile } from '../volume/block-file.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { readTextFile } from '../fs/text-file.js';

/** The longest side-file suffix (`mirror-transfer`), with room to spare: the side files of a NAME this long or shorter are `.NAME.*`. */
const SUFFIX_BYTES = 16;

export function sidePaths(volPath: string) {
  const dir = path.dirname(volPath);
  // `.NAME.` unless that would pass the 255-byte name limit: then a hash of NAME, the same every run
  const long = `.${path.basename(volPath)}.`;
  const base = Buffer.byteLength(long) + SUFFIX_BYTES <= 255 ? long : `.imgstream-${createHash('sha256').update(path.basename(volPath)).digest('hex').slice(0, 16)}.`;
  return {
    fresh: path.join(dir, `${base}mirror-new`),
    resume: path.join(dir, `${base}mirror-transfer`),
    /** The resume file's next version, renamed over it (a suffix of its own: `mirror-transfer.tmp` would pass the limit). */
    resumeNext: path.join(dir, `${base}mirror-saving`),
    stage: path.join(dir, `${base}mirror-stage`),
  };
}

/**
 * Refuses, naming the path given, a destination no transfer could finish at: an empty
 * path, a name over 255 bytes, a directory that does not exist or is no directory, a
 * directory itself (as opening it as a volume would). Checked before the source takes
 * its snapshot, and before `mirror start` starts retrying: the final link into place
 * must not be where a bad name is found.
 */
export function checkDestinationPath(volPath: string): void {
  if (volPath === '') throw new InvalidInputError('the destination path is empty', 'give a volume path or peer://HOST:PORT/NAME');
  tempBeside(volPath, 'mirror'); // its checks: the name's length, the directory
  // a first transfer would build it beside, then fail to link it into place (EEXIST)
  refuseDanglingLink(volPath, 'give a path that does not exist yet, or remove the link');
  let dir = false;
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(volPath);
    dir = st.isDirectory();
  } catch {
    /* absent: a first transfer creates it */
  }
  if (st) refuseNonVolumeFile(volPath, st); // a named pipe: opening it would wait forever
  if (dir && fs.existsSync(`${volPath}/protect.json`)) throw new NotAVolumeError(`${volPath}: is a protection destination, not a mirror`, 'a protection destination takes writes from imgstream protect alone: mirror to another path');
  if (dir) throw new NotAVolumeError(`${volPath}: is a directory, not a volume`);
}

/** How far a transfer got: what the destination acknowledged, and where it put what it had to stage. */
export interface ResumeFile {
  transferId: string;
  planHash: string;
  acked: number;
  chain: string;
  slots: Record<string, number>;
  staged: Array<{ vbn: number; offset: number }>;
  stageBytes: number;
  /** The volume the records went into (files written before it was recorded lack it: never resumed). */
  base?: ResumeBase;
}

/**
 * The volume a transfer writes its records into, as it was when the transfer began: NAME
 * itself (`exists`) or the first transfer's `.NAME.mirror-new`; the file (inode), the
 * volume (uuid) and its last CP (generation, map root). Its acknowledged records are in
 * that file's free space only: another file at NAME, or the same one after a CP, holds
 * none of them.
 */
export interface ResumeBase {
  exists: boolean;
  ino: number;
  uuid: string;
  generation: number;
  mapRoot: number;
  /** The transfer took a CP of its own since (apply-transfer.ts): the CP fields moved on; the ghosts' blocks are still checked one by one. */
  ownCp?: boolean;
}

/** The base of a transfer that writes into `vol` (open on `file`, NAME when `exists`). */
export function resumeBaseOf(vol: Volume, exists: boolean): ResumeBase {
  return { exists, ino: fs.fstatSync(vol.file.fd).ino, uuid: vol.rootRecord.uuid, generation: vol.rootRecord.generation, mapRoot: vol.rootRecord.mapRoot };
}

/**
 * Why the stopped transfer `r` cannot resume into what is at `volPath` now (`vol`, open,
 * when NAME exists), or null when it can: its records were acknowledged into a volume
 * that is no longer there as it was (moved, deleted, replaced by another file or a copy,
 * changed by a CP since).
 */
export function staleResume(volPath: string, r: ResumeFile, vol: Volume | null): string | null {
  const name = path.basename(volPath);
  const b = r.base;
  if (!b) return 'it does not record which volume it was written into';
  if (b.exists && !vol) return `the mirror it was writing into is no longer at ${name} (deleted or moved)`;
  if (!b.exists && vol) return `${name} now holds a volume that transfer did not build`;
  let file: string;
  let open: Volume | null = vol;
  if (vol) file = volPath;
  else {
    file = sidePaths(volPath).fresh;
    if (!fs.existsSync(file)) return `the volume it was building (${path.basename(file)}) is gone`;
    try {
      open = Volume.open(file, { write: false });
    } catch {
      return `the volume it was building (${path.basename(file)}) cannot be read`;
    }
  }
  try {
    const st = fs.statSync(file);
    const root = open!.rootRecord;
    if (st.ino !== b.ino || root.uuid !== b.uuid || (!b.ownCp && (root.generation !== b.generation || root.mapRoot !== b.mapRoot))) return `${path.basename(file)} is not the volume it was writing into (replaced, or changed since)`;
    return null;
  } finally {
    if (open !== vol) open!.close();
  }
}

/**
 * Drops a stopped transfer that cannot resume (staleResume): its resume and stage files,
 * and a first transfer's volume being built when NAME is another volume now. The resume
 * file goes first: a half-removed partial is never resumed.
 */
export function dropStaleResume(volPath: string): void {
  const sides = sidePaths(volPath);
  for (const f of [sides.resume, sides.resumeNext, sides.stage, sides.fresh]) fs.rmSync(f, { force: true });
}

/** The resume file's format version: files written before it was recorded are version 1. */
const RESUME_VERSION = 1;

/**
 * How far the transfer got, or null when there is nothing to resume (no file, or one
 * that does not parse: the transfer starts over). A file of a newer imgstream is refused
 * (FormatVersionError): starting over would throw away what it kept.
 */
export function readResume(file: string): ResumeFile | null {
  let r: ResumeFile & { version?: unknown };
  try {
    r = JSON.parse(readTextFile(file, 'a mirror resume file'));
  } catch {
    return null;
  }
  if (r?.version !== undefined && r.version !== RESUME_VERSION) {
    throw new FormatVersionError('a mirror resume file', r.version, [RESUME_VERSION], file, 'finish the transfer with the imgstream version that started it, or drop what it kept: imgstream mirror abandon');
  }
  if (typeof r?.transferId !== 'string' || !Number.isInteger(r.acked)) return null;
  return r;
}

/** Writes the resume file of the destination `volPath` whole: its next version, fsynced, renamed over it. */
export function writeResume(volPath: string, r: ResumeFile): void {
  const { resume, resumeNext } = sidePaths(volPath);
  const fd = fs.openSync(resumeNext, 'w', 0o600);
  try {
    fs.writeSync(fd, JSON.stringify({ version: RESUME_VERSION, ...r }));
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(resumeNext, resume);
  const d = fs.openSync(path.dirname(resume), 'r');
  fs.fsyncSync(d);
  fs.closeSync(d);
}

/**
 * After a transfer failed before anything of it was recorded to resume from: removes
 * what it left beside the destination (the stage file, a resume file of an older
 * transfer, and for a first transfer the volume it was building), so that nothing is
 * reported kept and the source lets its snapshot go. The resume file goes first: a
 * half-removed partial is never resumed.
 */
export function dropUnresumable(volPath: string, initial: boolean): void {
  const sides = sidePaths(volPath);
  for (const f of [sides.resume, sides.resumeNext, sides.stage]) fs.rmSync(f, { force: true });
  if (initial && !fs.existsSync(volPath)) fs.rmSync(sides.fresh, { force: true });
}

/**
 * Finishes a first transfer interrupted between its CP and the link into place; or, one
 * interrupted after its link and before the hidden name was removed (the file has two
 * names), removes that name and the transfer's side files: otherwise the hidden name
 * kept the mirror's blocks after the mirror was deleted, brought a deleted mirror back,
 * and was linked to NAME again after the mirror was moved away (a failover volume).
 */
export function settleFresh(volPath: string): void {
  const { fresh, resume, resumeNext, stage } = sidePaths(volPath);
  const st = fs.statSync(fresh, { throwIfNoEntry: false });
  if (!st) return;
  if (st.nlink > 1) {
    fs.rmSync(resume, { force: true }); // first: a half-removed transfer is never resumed
    fs.rmSync(resumeNext, { force: true });
    fs.rmSync(stage, { force: true });
    fs.rmSync(fresh, { force: true });
    return;
  }
  if (fs.existsSync(volPath)) return;
  let committed = false;
  try {
    const v = Volume.open(fresh, { write: false });
    committed = v.rootRecord.generation > 1 && v.mirrorFlags.mirror;
    v.close();
  } catch {
    committed = false;
  }
  if (!committed) return;
  fs.linkSync(fresh, volPath);
  fs.rmSync(fresh, { force: true });
  fs.rmSync(resume, { force: true });
}

/**
 * What a stopped transfer keeps beside the destination to resume from: the volume being
 * built by a first transfer (`.NAME.mirror-new`), the blocks staged for the final CP
 * (`.NAME.mirror-stage`) and how far it got (`.NAME.mirror-transfer`); bytes as allocated
 * on disk. Blocks a later transfer already wrote into an existing mirror's free space are
 * in the volume file and not counted.
 */
export function partialFiles(volPath: string): { files: string[]; bytes: number } {
  const sides = sidePaths(volPath);
  const files: string[] = [];
  let bytes = 0;
  for (const f of [fs.existsSync(volPath) ? null : sides.fresh, sides.stage, sides.resume]) {
    if (!f) continue;
    try {
      const st = fs.statSync(f);
      files.push(path.basename(f));
      bytes += st.blocks * 512;
    } catch {
      /* absent */
    }
  }
  return { files, bytes };
}

/**
 * Drops what a stopped transfer kept (`mirror abandon`): the next update starts a new
 * transfer. A first transfer that committed but was not linked into place yet is finished
 * instead (it is the mirror). The bytes freed.
 */
export function abandonPartial(volPath: string): { freedBytes: number; files: string[] } {
  // a named pipe (or another file that is no volume) is named for what it is, as everywhere (it said "no stopped transfer kept there")
  const st = fs.statSync(volPath, { throwIfNoEntry: false });
  if (st !== undefined) refuseNonVolumeFile(volPath, st, 'a volume', 'give the mirror volume the updates write');
  // a name no file can have (left by versions that found out only at the link) is never linked into place
  if (Buffer.byteLength(path.basename(volPath)) <= 255) settleFresh(volPath);
  const sidesNow = sidePaths(volPath);
  const target = fs.existsSync(volPath) ? volPath : sidesNow.fresh;
  // a transfer under way holds the volume it writes: its files are not ours to drop
  if (fs.existsSync(target) && VolumeLock.holder(target)) throw new BusyError(`${path.basename(volPath)}: a transfer (or another process) is using the destination now`, 'stop it first (mirror start exits on SIGTERM), then abandon');
  const kept = partialFiles(volPath);
  const sides = sidePaths(volPath);
  fs.rmSync(sides.resume, { force: true }); // first: a half-removed partial is never resumed
  fs.rmSync(sides.resumeNext, { force: true });
  fs.rmSync(sides.stage, { force: true });
  if (!fs.existsSync(volPath)) fs.rmSync(sides.fresh, { force: true });
  return { freedBytes: kept.bytes, files: kept.files };
}

