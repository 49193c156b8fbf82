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
import { BusyError, VolumeFullError } from '../core/errors.js';
import { Volume } from '../volume/volume.js';
import { crashPoint } from '../volume/crash-point.js';
import { BASE_FILE, INTERVALS_DIR, writeState, type ProtectState } from './destination-state.js';
import { fsyncDirectory } from '../fs/durable-file.js';
import { claimBase } from './base-claim.js';
import { intervalFileName, readIntervalIndex } from './interval-file.js';
import { applyOverlay, Overlay } from './overlay.js';

/** An interval the destination holds: its seq and end time. */
export interface HeldInterval {
  seq: number;
  end: number;
  snapshots: string[];
  bytes: number;
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
function takeSnapshot(base: Volume, name: string): void {
  if (base.snapshots().some((s) => s.name === name)) base.deleteSnapshot(name);
  if (base.freeSnapshotSlots().length === 0) {
    const oldest = oldestSnapshot(base);
    if (oldest !== null) base.deleteSnapshot(oldest);
  }
  base.createSnapshot(name);
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
    base = Volume.open(path.join(dir, BASE_FILE), { write: true });
  } catch (err) {
    release();
    if (err instanceof BusyError) return false;
    throw err;
  }
  try {
    if (!state.fold) {
      const t = foldTarget(state, held)!;
      state.fold = { to: t.seq, end: t.end };
      writeState(dir, state);
      crashPoint('protect-fold-started', dir);
    }
    const fold = state.fold;
    const { to, end } = fold;
    const ivDir = path.join(dir, INTERVALS_DIR);
    // one interval at a time, its progress recorded after its blocks and snapshots: a
    // restart redoes at most the interval in progress, on a base exact up to the one before
    for (let seq = (fold.applied ?? state.baseSeq) + 1; seq <= to; seq++) {
      const ix = readIntervalIndex(path.join(ivDir, intervalFileName(seq)));
      applyMakingRoom(base, new Overlay([ix]));
      const times: Record<string, number> = { ...state.baseSnapshotTimes };
      for (const name of ix.header.snapshots) {
        takeSnapshot(base, name);
        times[name] = ix.header.end;
      }
      base.file.sync();
      const kept = new Set(base.snapshots().map((x) => x.name));
      state.baseSnapshotTimes = Object.fromEntries(Object.entries(times).filter(([name]) => kept.has(name)));
      fold.applied = seq;
      writeState(dir, state);
      crashPoint('protect-fold-step', dir);
      // a long fold (days of intervals after --keep was shortened, or a shipper away for a
      // while) lets a peer daemon serve its other sessions between two intervals
      if (seq < to) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    crashPoint('protect-fold-applied', dir);
    const from = state.baseSeq;
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
    base.close();
    release();
  }
  return true;
}
