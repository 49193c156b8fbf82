// Retention at a protection destination: intervals that ended more than keepMs before the
// newest are folded into the base volume and deleted, so storage stays bounded by the
// retained window's blocks. Crash-safe in three durable steps: protect.json first records
// the fold (the window's start moves: no restore may ask for a time it drops), then the
// intervals are applied to the base in order (one CP each; the snapshots an interval
// carries are taken after its blocks), then protect.json records the new base and the
// interval files go. Progress is recorded after each interval (its blocks and snapshots),
// so a restart redoes only the interval in progress: it holds final block versions, so
// applying it again ends in the same state, and its snapshots are taken again (replacing
// any taken before the crash) on a base exact at that point. A name the source took
// again later replaces the older snapshot of that name.
import fs from 'node:fs';
import path from 'node:path';
import { BusyError, CorruptError, NotFoundError, VolumeFullError } from '../core/errors.js';
import { Volume } from '../volume/volume.js';
import { crashPoint } from '../volume/crash-point.js';
import { BASE_FILE, INTERVALS_DIR, writeState, type ProtectState } from './destination-state.js';
import { fsyncDirectory } from '../fs/durable-file.js';
import { claimBase } from './base-claim.js';
import { checkIntervalData, intervalFileName, readDamagedHeader, readIntervalIndex } from './interval-file.js';
import { applyBaseRenames, planBaseRenames } from './base-renames.js';
import type { SnapshotRename } from './destination-api.js';
import { applyOverlay, Overlay } from './overlay.js';
import { BASE_SUMS_FILE, BaseSums } from './base-sums.js';

/** An interval the destination holds: its seq and end time. */
export interface HeldInterval {
  seq: number;
  end: number;
  snapshots: string[];
  bytes: number;
  /** It holds every block of the disk (a full resync): nothing older is needed from it on. */
  whole: boolean;
}

/** The newest interval holding the whole disk after interval `after`, up to `upTo`, or null. */
export function wholeDiskAfter(held: HeldInterval[], after: number, upTo = Infinity): HeldInterval | null {
  let found: HeldInterval | null = null;
  for (const h of held) if (h.seq > after && h.seq <= upTo && h.whole) found = h;
  return found;
}

/** True when the destination's damage has no full resync after it yet: its shipper is asked for one. */
export function wholeDiskWanted(state: ProtectState, held: HeldInterval[]): boolean {
  return state.damage !== undefined && wholeDiskAfter(held, state.damage.seq) === null;
}

/** The damage of interval file `file` (its index, or a block's data against its checksum), or null when it reads whole. */
export async function damageOf(file: string, blockSize: number): Promise<CorruptError | null> {
  try {
    const ix = readIntervalIndex(file);
    const fd = fs.openSync(file, 'r');
    try {
      await checkIntervalData(fd, ix, blockSize, Buffer.allocUnsafe(Math.max(1, Math.floor(CHECK_BYTES / blockSize)) * blockSize), () => new Promise<void>((resolve) => setImmediate(resolve)));
    } finally {
      fs.closeSync(fd);
    }
    return null;
  } catch (err) {
    if (err instanceof CorruptError) return err;
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || err instanceof NotFoundError) return new CorruptError(`${file}: missing interval file`, 'the recovery points from this interval on cannot be rebuilt, up to a full resync after it');
    throw err;
  }
}

/** Bytes of an interval's data read at once when checking it before a fold. */
const CHECK_BYTES = 1 << 20;

/**
 * The fold retention asks for, with the intervals it would apply checked first, before
 * the window moves: a damaged one is left out with those after it up to a full resync
 * that holds the whole disk again (the points between cannot be rebuilt anyway), or,
 * with no such resync yet, the fold stops before it (retention holds there, and the
 * damage is recorded: the destination asks its shipper for a full resync). Null: nothing
 * to fold.
 */
async function planFold(dir: string, state: ProtectState, held: HeldInterval[], target: HeldInterval): Promise<NonNullable<ProtectState['fold']> | null> {
  const ivDir = path.join(dir, INTERVALS_DIR);
  const byseq = new Map(held.map((h) => [h.seq, h]));
  let skip: { from: number; to: number } | undefined;
  for (let seq = state.baseSeq + 1; seq <= target.seq; seq++) {
    const file = path.join(ivDir, intervalFileName(seq));
    const damage = await damageOf(file, state.source.blockSize);
    if (damage === null) continue;
    // what is wrong, without the path (status names the file as the directory is given to it)
    const what = damage.message.startsWith(`${file}: `) ? damage.message.slice(file.length + 2) : damage.message;
    const whole = wholeDiskAfter(held, seq, target.seq);
    // the first damage, or one after a resync that passes over the damage recorded before
    if (state.damage === undefined || (skip !== undefined && state.damage.seq <= skip.to)) state.damage = { seq, what };
    if (whole === null) {
      // held here until a full resync after it: what is before it folds
      const last = seq - 1;
      if (skip ? last < skip.to + 1 : last <= state.baseSeq) return null;
      return { to: last, end: byseq.get(last)!.end, ...(skip ? { skip } : {}) };
    }
    skip = { from: skip?.from ?? seq, to: whole.seq - 1 };
    seq = whole.seq - 1; // go on checking from the resync on
  }
  if (skip && state.damage && state.damage.seq <= skip.to) delete state.damage; // passed over: later points rebuild
  return { to: target.seq, end: target.end, ...(skip ? { skip } : {}) };
}

/** The last seq older than the window (end < newest end − keep), or null when nothing is to fold. */
export function foldTarget(state: ProtectState, held: HeldInterval[]): HeldInterval | null {
  const cutoff = state.intervalEnd - state.keepMs;
  let target: HeldInterval | null = null;
  for (const h of held) if (h.seq > state.baseSeq && h.end < cutoff) target = h;
  return target;
}

/**
 * Takes a source snapshot on the base, right after its interval's blocks: a snapshot of
 * that name already there (an older one the source deleted and took again, or this one,
 * taken before a crash) is replaced: the base's state is exact at this step, so the new
 * one holds the right data either way. Makes room when every slot is taken (the oldest
 * snapshot goes).
 */
function takeSnapshot(base: Volume, name: string, takenMs: number): void {
  if (base.snapshots().some((s) => s.name === name)) base.deleteSnapshot(name);
  if (base.freeSnapshotSlots().length === 0) {
    const oldest = oldestSnapshot(base);
    if (oldest !== null) base.deleteSnapshot(oldest);
  }
  base.createSnapshot(name, { createdMs: takenMs }); // (when the source took it, not when it was folded)
}

/** The oldest snapshot of the base, which goes first when room is needed. */
function oldestSnapshot(base: Volume): string | null {
  return [...base.snapshots()].sort((a, b) => a.id - b.id)[0]?.name ?? null;
}

/**
 * Applies an interval to the base; when the base is full (the snapshots it keeps pin old
 * blocks), its oldest snapshots are deleted one at a time until the interval fits.
 */
function applyMakingRoom(base: Volume, overlay: Overlay): void {
  for (;;) {
    try {
      applyOverlay(base, overlay);
      return;
    } catch (err) {
      const oldest = oldestSnapshot(base);
      if (!(err instanceof VolumeFullError) || oldest === null) throw err;
      base.abort();
      base.deleteSnapshot(oldest);
    }
  }
}

/**
 * Gives the base's snapshots the names the source renamed them to in interval `seq`: the
 * plan is recorded first, then carried out (again, after a crash in the middle).
 */
function renameBaseSnapshots(dir: string, state: ProtectState, fold: NonNullable<ProtectState['fold']>, seq: number, base: Volume, renames: SnapshotRename[]): void {
  if (fold.renaming?.seq !== seq) {
    const plan = renames.length ? planBaseRenames(base, renames, { times: state.baseSnapshotTimes ?? {}, renamed: state.baseRenamed ?? {} }) : null;
    if (plan === null) return;
    fold.renaming = { seq, ...plan };
    writeState(dir, state);
    crashPoint('protect-fold-renaming', dir);
  }
  applyBaseRenames(base, fold.renaming);
  state.baseSnapshotTimes = { ...fold.renaming.times };
  state.baseRenamed = { ...fold.renaming.renamed };
}

/**
 * Finishes a pending fold, then folds what retention asks for. Returns false when the
 * base is busy (a restore reads it): the fold waits for the next append.
 * `held` (ascending seq) is updated in place.
 */
export async function foldExpired(dir: string, state: ProtectState, held: HeldInterval[]): Promise<boolean> {
  if (!state.fold && !foldTarget(state, held)) return true;
  let base: Volume;
  let release: () => void;
  try {
    release = claimBase(path.join(dir, BASE_FILE));
  } catch (err) {
    if (err instanceof BusyError) return false;
    throw err;
  }
  try {
    base = Volume.open(path.join(dir, BASE_FILE), { write: true, protectBase: true });
    base.setProtectBase(true); // a base an older imgstream seeded is marked by its first fold here
  } catch (err) {
    release();
    if (err instanceof BusyError) return false;
    throw err;
  }
  let sums: BaseSums | null = null;
  try {
    sums = openSumsForFold(dir, state);
    if (!state.fold) {
      const damageBefore = state.damage?.seq;
      const plan = await planFold(dir, state, held, foldTarget(state, held)!);
      if (plan === null) {
        if (state.damage?.seq !== damageBefore) writeState(dir, state);
        return true;
      }
      state.fold = plan;
      writeState(dir, state);
      crashPoint('protect-fold-started', dir);
    }
    const fold = state.fold;
    const { to, end } = fold;
    const ivDir = path.join(dir, INTERVALS_DIR);
    // one interval at a time, its progress recorded after its blocks and snapshots: a
    // restart redoes at most the interval in progress, on a base exact up to the one before
    for (let seq = (fold.applied ?? state.baseSeq) + 1; seq <= to; seq++) {
      const file = path.join(ivDir, intervalFileName(seq));
      // damaged, or before a full resync after the damage: the base takes the resync's whole disk instead
      // (the snapshots the source renamed meanwhile take their new names, when its header tells them)
      const skipped = fold.skip !== undefined && seq >= fold.skip.from && seq <= fold.skip.to;
      const ix = skipped ? null : readIntervalIndex(file);
      if (ix) {
        applyMakingRoom(base, new Overlay([ix]));
        crashPoint('protect-fold-sums', dir); // the blocks committed, their checksums not yet written: the step is redone
        sums?.takeInterval(ix); // after the CP: an entry is never newer than its block
      }
      renameBaseSnapshots(dir, state, fold, seq, base, (ix ? ix.header : readDamagedHeader(file))?.renames ?? []);
      if (!ix) {
        if (fold.renaming?.seq === seq) {
          // progress recorded: carried out again, the renames would rename what already has its new name
          delete fold.renaming;
          fold.applied = seq;
          writeState(dir, state);
        }
        continue;
      }
      const times: Record<string, number> = { ...state.baseSnapshotTimes };
      for (const name of ix.header.snapshots) {
        takeSnapshot(base, name, ix.header.end);
        times[name] = ix.header.end;
      }
      base.file.sync();
      sums?.sync();
      const kept = new Set(base.snapshots().map((x) => x.name));
      state.baseSnapshotTimes = Object.fromEntries(Object.entries(times).filter(([name]) => kept.has(name)));
      // old names of snapshots still there, and not taken again since
      if (state.baseRenamed) state.baseRenamed = Object.fromEntries(Object.entries(state.baseRenamed).filter(([old, now]) => kept.has(now) && !kept.has(old)));
      delete fold.renaming;
      fold.applied = seq;
      writeState(dir, state);
      crashPoint('protect-fold-step', dir);
      // a long fold (days of intervals after --keep was shortened, or a shipper away for a
      // while) lets a peer daemon serve its other sessions between two intervals
      if (seq < to) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    crashPoint('protect-fold-applied', dir);
    const from = state.baseSeq;
    // damage a scrub found in the base's data: gone once a fold took an interval holding the whole disk
    if (state.damage?.base && held.some((h) => h.seq > from && h.seq <= to && h.whole && !(fold.skip && h.seq >= fold.skip.from && h.seq <= fold.skip.to))) delete state.damage;
    state.baseSeq = to;
    state.baseTime = end;
    state.fold = null;
    writeState(dir, state);
    crashPoint('protect-fold-recorded', dir);
    for (let seq = from + 1; seq <= to; seq++) fs.rmSync(path.join(ivDir, intervalFileName(seq)), { force: true });
    fsyncDirectory(ivDir);
    const keepFrom = held.findIndex((h) => h.seq > to);
    held.splice(0, keepFrom < 0 ? held.length : keepFrom);
  } finally {
    sums?.close();
    base.close();
    release();
  }
  return true;
}

/**
 * The base checksums a fold keeps up to date, or null when the destination keeps none (seeded
 * by an older imgstream). A file whose header is damaged is removed: the fold goes on, and
 * the base is checked for its structure only from then on, as such a destination's is.
 */
function openSumsForFold(dir: string, state: ProtectState): BaseSums | null {
  const geometry = { write: true, blockSize: state.source.blockSize, logicalBlocks: state.source.logicalSize / state.source.blockSize };
  try {
    return BaseSums.open(dir, geometry);
  } catch (err) {
    if (!(err instanceof CorruptError)) throw err;
    fs.rmSync(path.join(dir, BASE_SUMS_FILE), { force: true });
    return null;
  }
}
