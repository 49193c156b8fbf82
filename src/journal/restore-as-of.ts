// Rebuilding the disk as of a recovery point at a protection destination: base.vol's
// active state, overlaid with the newest version of each block among the intervals after
// the base up to that point. The overlay's map (LBN → interval file, offset) is built from
// the interval indexes without reading data, then each chosen block is read once: cost
// ∝ the distinct blocks changed since the base, not the number of writes.
//
// The base is opened (its volume lock taken, and claimed in this process: base-claim.ts)
// for the whole rebuild: a fold, which needs both, waits, so neither the base nor the
// interval files change underneath.
import fs from 'node:fs';
import path from 'node:path';
import { BusyError, CorruptError, ExistsError, ImgstreamError, InvalidInputError, NotFoundError, fromSystemError } from '../core/errors.js';
import { noProgress, type Progress } from '../core/progress.js';
import { removeStaleTemp, tempBeside } from '../fs/stale-temp.js';
import { refuseDanglingLink } from '../fs/link-target.js';
import { readLogicalBytes } from '../volume/logical-io.js';
import { isZero } from '../volume/zero.js';
import { Volume } from '../volume/volume.js';
import type { FileSink } from '../volume/image-io.js';
import { BASE_FILE, INTERVALS_DIR, readState, windowOf, type ProtectState } from './destination-state.js';
import { intervalFileName, readIntervalIndex } from './interval-file.js';
import { applyOverlay, Overlay } from './overlay.js';
import { copyVolumeSparse } from './sparse-copy.js';
import { claimBase } from './base-claim.js';
import { BASE_SUMS_FILE, BaseSums, baseDamage, mismatches, zeroMismatches } from './base-sums.js';
import { noneMapped } from '../volume/logical-map.js';
import { LATEST, listPoints, namesAt, recoveryPointFor, wholeDiskBefore, type RecoveryPoint } from './recovery-point.js';

export interface AsOfResult {
  destination: string;
  /** The recovery point rebuilt: its time (ISO), interval seq and snapshots. */
  point: { seq: number; time: string; snapshots: string[]; baseSnapshot?: string };
  /** Blocks taken from intervals (distinct LBNs changed since the base). */
  overlayBlocks: number;
  /** Interval files whose indexes were read. */
  intervals: number;
  /** Blocks taken from the base and checked against its checksums (base.sums). */
  baseChecked: number;
  /** Why the blocks taken from the base were not checked, when they were not. */
  baseUnchecked?: string;
}

/** How long a restore waits for a fold in progress to finish with the base. */
const BASE_WAIT_MS = 60_000;

/** The base, opened (its lock taken) and claimed in this process, waiting out a fold; close it, then release(). */
export async function openBase(dir: string): Promise<{ base: Volume; release: () => void }> {
  const file = path.join(dir, BASE_FILE);
  const deadline = Date.now() + BASE_WAIT_MS;
  for (;;) {
    let release: (() => void) | null = null;
    try {
      release = claimBase(file);
      return { base: Volume.open(file, { write: false }), release };
    } catch (err) {
      release?.();
      if (err instanceof NotFoundError) {
        // no base: not seeded yet, or a seeded destination lost it (damage, never "create a volume")
        const s = readState(dir);
        if (!s.seeded) throw new NotFoundError(`${dir}: holds no recovery point yet (the first transfer has not completed)`, 'wait for imgstream protect to seed it');
        if (!fs.existsSync(file)) throw new CorruptError(`${file}: missing: the destination's base volume is gone`, `no recovery point can be rebuilt without it: move ${dir} aside and protect to a new destination`);
      }
      if (err instanceof ImgstreamError && err.code !== 'busy' && err.code !== 'io') throw Object.assign(err, { message: err.message.startsWith(file) ? err.message : `${file} (the destination's base volume): ${err.message}` });
      if (!(err instanceof BusyError) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Runs fn with the base open and the state, recovery point and overlay that go with it. */
async function withRecoveryPoint<T>(dir: string, asOf: string, fn: (base: Volume, s: ProtectState, point: RecoveryPoint, overlay: Overlay) => Promise<T>): Promise<T> {
  readState(dir); // a clear error for a path that is no destination, before the base
  const { base, release } = await openBase(dir);
  try {
    const s = readState(dir); // read under the base's lock: no fold runs now
    const held = listPoints(dir, s, { verify: false });
    // a name as the source has it now (renamed there since, perhaps): a point in the window, or a snapshot of the base
    const names = namesAt(s, held, base.snapshots().map((x) => x.name));
    const ref = names.current.get(asOf);
    const baseSnap = ref !== undefined && 'base' in ref ? base.snapshots().find((x) => x.name === ref.base) : undefined;
    if (baseSnap && asOf === LATEST) {
      const w = windowOf(s)!;
      const at = s.baseSnapshotTimes?.[baseSnap.name] ?? baseSnap.createdMs;
      throw new InvalidInputError(`"${LATEST}" names both the newest recovery point of ${dir} (${new Date(w.end).toISOString()}) and the source snapshot ${LATEST} in its base (${new Date(at).toISOString()})`, `give the time of the one you want: --as-of ${new Date(w.end).toISOString()}, or restore the snapshot from the base: imgstream volume export ${path.join(dir, BASE_FILE)}@${baseSnap.name}`);
    }
    if (baseSnap) {
      // a source snapshot folded into the base: that snapshot of the base, nothing over it
      return await fn(base, s, { seq: s.baseSeq, time: s.baseSnapshotTimes?.[baseSnap.name] ?? baseSnap.createdMs, snapshots: [asOf], baseSnapshot: baseSnap.name }, new Overlay([]));
    }
    const point = recoveryPointFor(dir, s, held, asOf, names);
    // from the newest interval holding the whole disk on (a full resync), when there is one: nothing older counts
    const indexes = [];
    const whole = wholeDiskBefore(held.points, s, point.seq);
    for (let seq = whole ?? s.baseSeq + 1; seq <= point.seq; seq++) indexes.push(readIntervalIndex(path.join(dir, INTERVALS_DIR, intervalFileName(seq))));
    return await fn(base, s, point, new Overlay(indexes));
  } finally {
    base.close();
    release();
  }
}

function resultOf(dir: string, point: RecoveryPoint, overlay: Overlay, check: BaseCheck): AsOfResult {
  return {
    destination: dir,
    point: { seq: point.seq, time: new Date(point.time).toISOString(), snapshots: point.snapshots, ...(point.baseSnapshot ? { baseSnapshot: point.baseSnapshot } : {}) },
    overlayBlocks: overlay.blockCount,
    intervals: overlay.indexes.length,
    baseChecked: check.checked,
    ...(check.unchecked ? { baseUnchecked: check.unchecked } : {}),
  };
}

/** What a rebuild's line says of the base blocks it checked: nothing when it checked them. */
export function baseCheckNote(r: AsOfResult): string {
  return r.baseUnchecked ? `; the blocks from the base not checked: ${r.baseUnchecked}` : '';
}

/** Entries of base.sums read at once where the base leaves the disk unmapped (1 MiB). */
const SUMS_AHEAD = 1 << 18;

/** Checking the blocks a rebuild takes from the base against base.sums. */
class BaseCheck {
  checked = 0;
  readonly unchecked: string | null;
  private readonly sums: BaseSums | null;
  private window: { first: number; entries: Uint32Array } | null = null;

  constructor(dir: string, base: Volume, point: RecoveryPoint, private readonly overlay: Overlay) {
    let sums: BaseSums | null = null;
    let why: string | null = null;
    if (point.baseSnapshot) why = `a snapshot of the base (${point.baseSnapshot}): ${BASE_SUMS_FILE} covers its disk only`;
    else {
      try {
        sums = BaseSums.open(dir, { write: false, blockSize: base.blockSize, logicalBlocks: base.logicalBlocks });
        if (sums === null) why = `the destination keeps no ${BASE_SUMS_FILE} (seeded by an older imgstream)`;
      } catch (err) {
        if (!(err instanceof CorruptError)) throw err;
        why = err.message;
      }
    }
    this.sums = sums;
    this.unchecked = why;
  }

  /** Checks the blocks at LBNs [first, …) read from the base into `data`, but those the overlay replaces; throws on damage. */
  check(first: number, data: Buffer, baseFile: string): void {
    if (this.sums === null) return;
    const n = data.length / this.sums.blockSize;
    const { held, count } = this.overlay.heldIn(first, n);
    const bad = mismatches(this.sums, first, data, (lbn) => held[lbn - first] === 1);
    if (bad.length) throw baseDamage(baseFile, bad);
    this.checked += n - count;
  }

  /**
   * LBNs [first, first + n) that the base leaves unmapped (zeros): true when base.sums says
   * zeros for each (or there is none), and they count as checked; false sends the caller
   * to read them, so that check() names the damage.
   */
  zeros(first: number, n: number): boolean {
    if (this.sums === null) return true;
    const { held, count } = this.overlay.heldIn(first, n);
    if (count === n) return true; // all replaced: nothing of the base is taken
    if (zeroMismatches(this.sums.blockSize, first, this.entries(first, n), (lbn) => held[lbn - first] === 1).length > 0) return false;
    this.checked += n - count;
    return true;
  }

  /** base.sums' entries for [first, first + n), read SUMS_AHEAD at a time (zeros() walks the disk in order). */
  private entries(first: number, n: number): Uint32Array {
    const w = this.window;
    if (w === null || first < w.first || first + n > w.first + w.entries.length) {
      const count = Math.min(Math.max(n, SUMS_AHEAD), this.sums!.logicalBlocks - first);
      this.window = { first, entries: this.sums!.read(first, count) };
    }
    const at = first - this.window!.first;
    return this.window!.entries.subarray(at, at + n);
  }

  /** Reads the whole disk of `vol` (a copy of the base) and checks it, chunk after chunk (what it leaves unmapped, from base.sums alone). */
  checkVolume(vol: Volume, baseFile: string): void {
    if (this.sums === null) return;
    const bs = vol.blockSize;
    const per = Math.max(1, Math.floor(CHUNK_BYTES / bs));
    const map = vol.mapOf();
    const buf = Buffer.allocUnsafe(per * bs);
    for (let lbn = 0; lbn < vol.logicalBlocks; lbn += per) {
      const n = Math.min(per, vol.logicalBlocks - lbn);
      if (noneMapped(map, lbn, lbn + n) && this.zeros(lbn, n)) continue;
      const chunk = buf.subarray(0, n * bs);
      readLogicalBytes(vol, map, lbn * bs, chunk);
      this.check(lbn, chunk, baseFile);
    }
  }

  close(): void {
    this.sums?.close();
  }
}

/**
 * Creates the volume `to` holding the disk as of `asOf`: a copy of base.vol (its
 * snapshots included) with the overlay written and committed, built under a temporary
 * name and linked into place only when complete.
 */
export async function restoreProtectedAsOf(dir: string, asOf: string, to: string, progress: Progress = noProgress): Promise<AsOfResult> {
  if (fs.existsSync(to)) throw new ExistsError(`${to}: already exists`, 'restore as of a time into a new volume');
  refuseDanglingLink(to, 'restore as of a time into a new volume: give --to a path that does not exist, or remove the link');
  return withRecoveryPoint(dir, asOf, async (base, _s, point, overlay) => {
    const { dir: parent, prefix } = tempBeside(to, 'restoring');
    removeStaleTemp(parent, prefix);
    const tmp = path.join(parent, `${prefix}${process.pid}`);
    const checked = new BaseCheck(dir, base, point, overlay);
    try {
      fs.rmSync(tmp, { force: true });
      copyVolumeSparse(base, tmp);
      const vol = Volume.open(tmp, { write: true, protectBase: true });
      try {
        vol.setProtectBase(false); // a volume of its own: committed with the overlay
        // what the copy took from the base, checked before anything is laid over it
        checked.checkVolume(vol, base.path);
        if (point.baseSnapshot) vol.resetActiveTo(point.baseSnapshot);
        progress.start('restoring', overlay.blockCount, 'blocks');
        let done = 0;
        applyOverlay(vol, overlay, (n) => progress.update((done += n)));
        vol.file.sync();
      } finally {
        progress.stop();
        vol.close();
      }
      try {
        fs.linkSync(tmp, to);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ExistsError(`${to}: appeared while restoring`, 'restore again');
        throw fromSystemError(err, to, 'creating the volume');
      }
    } catch (err) {
      // damage found in the copy is the base's (the rest is written fresh): named as base.vol's, with its check
      if (err instanceof CorruptError && err.message.includes(tmp)) throw new CorruptError(err.message.split(tmp).join(`${base.path} (the destination's base volume)`), err.hint?.split(tmp).join(base.path));
      if (err instanceof Error) err.message = err.message.split(tmp).join(to);
      // a system error (no such directory, no space) is named as such, with the path asked for
      throw typeof (err as NodeJS.ErrnoException).code === 'string' ? fromSystemError(err, to, 'creating the volume') : err;
    } finally {
      checked.close();
      fs.rmSync(tmp, { force: true });
    }
    return resultOf(dir, point, overlay, checked);
  });
}

/** Bytes of the image assembled at once (whole blocks, at least one). */
const CHUNK_BYTES = 8 << 20;

/** Writes the disk as of `asOf` as a raw image to the sink `sinkFor` makes (a file appears whole or not at all). */
export async function exportProtectedAsOf(dir: string, asOf: string, sinkFor: (size: number, source: ProtectState['source']) => FileSink, progress: Progress = noProgress): Promise<AsOfResult & { bytes: number }> {
  return withRecoveryPoint(dir, asOf, async (base, s, point, overlay) => {
    const bs = base.blockSize;
    const total = base.logicalBlocks;
    const map = base.mapOf(point.baseSnapshot);
    const checked = new BaseCheck(dir, base, point, overlay);
    let fds: number[];
    try {
      fds = overlay.openFiles(); // before the sink: a file that fails to open leaves no temporary output behind
    } catch (err) {
      checked.close();
      throw err;
    }
    let sink: FileSink;
    try {
      sink = sinkFor(total * bs, s.source);
    } catch (err) {
      for (const fd of fds) fs.closeSync(fd);
      checked.close();
      throw err;
    }
    let bytes = 0;
    try {
      progress.start('exporting', total * bs, 'bytes');
      const per = Math.max(1, Math.floor(CHUNK_BYTES / bs));
      let zeros: Buffer | null = null;
      for (let lbn = 0; lbn < total; lbn += per) {
        const n = Math.min(per, total - lbn);
        // zeroed since the base (a trim's run), or nothing of the base here and nothing but zeros laid over it: neither read nor scanned
        if (overlay.zeroesAll(lbn, lbn + n) || (noneMapped(map, lbn, lbn + n) && !overlay.holdsDataIn(lbn, lbn + n) && checked.zeros(lbn, n))) {
          if (sink.skip) sink.skip(n * bs);
          else await sink.write((zeros ??= Buffer.alloc(per * bs)).subarray(0, n * bs));
          bytes += n * bs;
          progress.update(bytes);
          continue;
        }
        const buf = Buffer.alloc(n * bs);
        readLogicalBytes(base, map, lbn * bs, buf);
        checked.check(lbn, buf, base.path);
        overlay.eachIn(lbn, lbn + n, (k, from, count) => {
          const at = (from - lbn) * bs;
          if (overlay.isZeroAt(k)) buf.fill(0, at, at + count * bs);
          else overlay.readAt(k, buf.subarray(at, at + bs), fds);
        });
        if (!sink.skip) await sink.write(buf);
        else {
          // runs of blocks: zeros are skipped (holes in a file; nothing on a peer's wire), the rest written
          const skip = sink.skip;
          for (let at = 0; at < buf.length; ) {
            const zero = isZero(buf.subarray(at, at + bs));
            let end = at + bs;
            while (end < buf.length && isZero(buf.subarray(end, end + bs)) === zero) end += bs;
            if (zero) skip(end - at);
            else await sink.write(buf.subarray(at, end));
            at = end;
          }
        }
        bytes += buf.length;
        progress.update(bytes);
      }
      await sink.finish();
    } catch (err) {
      sink.discard();
      throw err;
    } finally {
      progress.stop();
      for (const fd of fds) fs.closeSync(fd);
      checked.close();
    }
    return { ...resultOf(dir, point, overlay, checked), bytes };
  });
}

/** True when `spec` names a local protection destination: a directory holding protect.json. */
export function isProtectDestination(spec: string): boolean {
  try {
    return fs.statSync(spec).isDirectory() && fs.existsSync(path.join(spec, 'protect.json'));
  } catch {
    return false;
  }
}
