// DEST/protect.json: what a protection destination holds, rewritten whole (durable-file.ts)
// at every step, so a crash leaves the previous or the next version. It is the truth:
// interval files with a seq above intervalSeq are leftovers of an append that did not
// complete, and are removed when the destination is next opened.
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, InvalidInputError, NotFoundError, NotAVolumeError } from '../core/errors.js';
import type { ProtectedSource } from './destination-api.js';
import { writeFileDurably } from '../fs/durable-file.js';
import { Volume } from '../volume/volume.js';
import { FLAG_MIRROR } from '../volume/volume-flags.js';
import { refuseNonVolumeFile } from '../volume/block-file.js';
import { intervalSeqOf } from './interval-file.js';
import type { BaseRenamePlan } from './base-renames.js';

export const STATE_FILE = 'protect.json';
export const BASE_FILE = 'base.vol';
export const INTERVALS_DIR = 'intervals';
const FORMAT = 'imgstream-protect-destination';

export interface ProtectState {
  format: typeof FORMAT;
  version: 1;
  source: ProtectedSource;
  keepMs: number;
  /** False until a seed completed. */
  seeded: boolean;
  /** The base volume holds the seed and every interval up to this seq (0: the seed only). */
  baseSeq: number;
  /** The time of the base's state: the seed's time, or the end of interval baseSeq. */
  baseTime: number;
  /** The last interval stored (0: only the seed). */
  intervalSeq: number;
  /** Its end time (ms): the newest recovery point. */
  intervalEnd: number;
  /** When later than intervalEnd: no write was acknowledged from intervalEnd until this time (a quiet source), so the window reaches it. */
  quietTo?: number;
  /** The last journal record held. */
  journalTo: number;
  /**
   * A fold under way: intervals baseSeq+1..to are being applied to the base, those up to
   * `applied` are in it; `end` is interval to's end, the window's new start. `skip`: the
   * intervals from..to are left out (damaged ones, and those up to a full resync after
   * them, which holds the whole disk again). `renaming`: the renames of interval seq
   * (applied+1), worked out and being carried out on the base's snapshots (base-renames.ts).
   */
  fold: { to: number; end: number; applied?: number; skip?: { from: number; to: number }; renaming?: { seq: number } & BaseRenamePlan } | null;
  /**
   * A damaged interval a fold found (seq, and what is wrong): retention holds before it,
   * and its recovery points and those after it cannot be rebuilt, until a full resync
   * after it (which the destination asks its shipper for) lets folds pass over it.
   * `base`: the damage is in the base's data (a scrub found blocks failing base.sums; seq
   * is the base's): folds go on, and the first one that takes a full resync clears it.
   */
  damage?: { seq: number; what: string; base?: true };
  /** The source's time (ms) of each snapshot folded into the base: the end of the interval that carried it. */
  baseSnapshotTimes?: Record<string, number>;
  /** The names base snapshots had before the source renamed them (old → now): a restore asking for an old one is told the new one. */
  baseRenamed?: Record<string, string>;
  /** The id of the last scrub finding (scrub.json) taken up: see scrub-finding.ts. */
  scrubTakenUp?: string;
}

export function statePath(dir: string): string {
  return path.join(dir, STATE_FILE);
}

/** The oldest and newest times a restore may ask for, or null before the seed. */
export function windowOf(s: ProtectState): { start: number; end: number } | null {
  if (!s.seeded) return null;
  return { start: s.fold ? s.fold.end : s.baseTime, end: Math.max(s.intervalEnd, s.quietTo ?? 0) };
}

/**
 * Reads DIR/protect.json. A path that is not a protection destination gets an error
 * naming what it is instead (a volume file, a directory without protect.json).
 */
export function readState(dir: string): ProtectState {
  if (dir === '') throw new InvalidInputError('the protection destination path is empty', 'give the directory imgstream protect --to wrote');
  refuseVolumePath(dir);
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch {
    throw new NotFoundError(`${dir}: no such protection destination`);
  }
  if (!st.isDirectory()) throw new NotAVolumeError(`${dir}: is a file, not a protection destination (a directory holding protect.json)`, 'give the directory imgstream protect --to wrote');
  let text: string;
  try {
    text = fs.readFileSync(statePath(dir), 'utf8');
  } catch {
    // a destination that lost its state file is damage, not "no destination": what it holds is named
    const held = heldByDestination(dir);
    if (held) throw new CorruptError(`${dir}: ${STATE_FILE} is missing, but the directory holds a protection destination's ${held}`, `read what it holds (imgstream volume export ${path.join(dir, BASE_FILE)}) or move it away, then protect to a new directory`);
    throw new NotFoundError(`${dir}: not a protection destination (no ${STATE_FILE})`, 'give the directory imgstream protect --to wrote');
  }
  let s: ProtectState;
  try {
    s = JSON.parse(text) as ProtectState;
  } catch {
    throw new CorruptError(`${statePath(dir)}: unreadable (not JSON)`);
  }
  if (s.format !== FORMAT) throw new CorruptError(`${statePath(dir)}: not a protection destination's state file`);
  if (s.version !== 1) throw new NotAVolumeError(`${statePath(dir)}: a protection destination of version ${String(s.version)}, which this imgstream does not read (it reads version 1)`, 'use the imgstream version that wrote it');
  return s;
}

/** What of a destination DIR holds besides its state file (its base, or intervals), or null. */
export function heldByDestination(dir: string): string | null {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return null;
  }
  if (names.includes(BASE_FILE)) return BASE_FILE;
  if (!names.includes(INTERVALS_DIR)) return null;
  try {
    return fs.readdirSync(path.join(dir, INTERVALS_DIR)).some((n) => intervalSeqOf(n) !== null) ? 'intervals' : null;
  } catch {
    return null;
  }
}

export function writeState(dir: string, s: ProtectState): void {
  writeFileDurably(statePath(dir), `${JSON.stringify(s, null, 1)}\n`);
}

export function initialState(source: ProtectedSource, keepMs: number): ProtectState {
  const { uuid, path: where, blockSize, logicalSize, journalId } = source; // (journalLast is the session's, never stored)
  return { format: FORMAT, version: 1, source: { uuid, path: where, blockSize, logicalSize, ...(journalId !== undefined ? { journalId } : {}) }, keepMs, seeded: false, baseSeq: 0, baseTime: 0, intervalSeq: 0, intervalEnd: 0, journalTo: 0, fold: null };
}

/** Refuses a path that is a volume file (plain or mirror), naming what it is; any other file too (a named pipe as such) unless `volumesOnly`. */
export function refuseVolumePath(p: string, volumesOnly = false): void {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch {
    return;
  }
  if (st.isDirectory()) return;
  // a named pipe or a socket, named as every command names it (opening one as a volume would wait for a writer)
  if (!volumesOnly) refuseNonVolumeFile(p, st, 'a protection destination', 'give a directory: imgstream protect creates it');
  let what = 'a file';
  try {
    const v = Volume.openView(p);
    what = (v.rootRecord.flags & FLAG_MIRROR) !== 0 ? 'a mirror destination volume' : 'an imgstream volume';
    v.close();
  } catch {
    /* not a volume */
  }
  if (volumesOnly && what === 'a file') return;
  // a volume asked about as a protected source has no write journal yet: say how it gets one
  const hint = what === 'an imgstream volume' ? `a destination is a directory, which imgstream protect creates; to protect this volume: imgstream serve nbd ${p} --journal, then imgstream protect ${p} --to DIR` : 'give a directory: imgstream protect creates it';
  throw new NotAVolumeError(`${p}: is ${what}, not a protection destination`, hint);
}

