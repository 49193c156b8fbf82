// Opening a volume file: the checks and the lock of an ordinary open, and the seqlock
// retry of a lockless view of a volume that another process holds and changes. The
// caller (Volume) builds the open volume from the file and the root record read here.
import fs from 'node:fs';
import { BusyError, InvalidInputError, NotAVolumeError, NotFoundError, fromSystemError } from '../core/errors.js';
import type { RootRecord } from '../format/volume-root.js';
import { BlockFile, refuseNonVolumeFile } from './block-file.js';
import { readRootRecord } from './root-reader.js';
import { FLAG_MIRROR, FLAG_MIRROR_BROKEN, FLAG_PROTECT_BASE, FLAG_RESTORE_UNFINISHED } from './volume-flags.js';
import nodePath from 'node:path';
import { VolumeLock } from './volume-lock.js';

export interface OpenOptions {
  write: boolean;
  /** The mirror engine writing a mirror destination (other writers are refused). */
  mirror?: boolean;
  /** A protection destination writing its base (other writers are refused). */
  protectBase?: boolean;
  /** Opens one whose restore is unfinished (FLAG_RESTORE_UNFINISHED): the restore finishing it, and what only reads its table. */
  unfinishedRestore?: boolean;
  /** A writer that changes no block of the disk (a dump: its snapshot at most), as a read-only open: its lock says so. */
  keepsDisk?: boolean;
  /** A writer that drops the snapshot table's damaged entries (volume check --drop-damaged-snapshots): the volume opens with them. */
  dropDamagedSnapshots?: boolean;
}

/**
 * Checks that `path` is a volume, locks it, opens it and reads its root record, then
 * calls `load`; closes the file and releases the lock when anything throws.
 */
export function openLocked<T>(path: string, opts: OpenOptions, load: (file: BlockFile, lock: VolumeLock, root: RootRecord) => T): T {
  const st = statVolume(path);
  // (a shipper of the volume's journal claims recovery points while such a holder holds it)
  const lock = VolumeLock.acquire(path, st, 'volume', !opts.write || opts.keepsDisk === true);
  let file: BlockFile | null = null;
  try {
    file = BlockFile.open(path, opts.write);
    const root = readRootRecord(file, path);
    if (opts.write && !opts.mirror && (root.flags & FLAG_MIRROR) !== 0 && (root.flags & FLAG_MIRROR_BROKEN) === 0) {
      throw new InvalidInputError(`${path}: is a mirror destination, written only by its mirror`, `read it, or make it writable with: imgstream mirror break ${path}`);
    }
    if (opts.write && !opts.protectBase && (root.flags & FLAG_PROTECT_BASE) !== 0) {
      const dest = nodePath.dirname(path);
      throw new InvalidInputError(`${path}: is the base volume of the protection destination ${dest}, written only by imgstream protect`, `read it, or rebuild a volume from the destination with: imgstream restore --to NEW --as-of TIME --from ${dest}`);
    }
    if (!opts.unfinishedRestore) refuseUnfinishedRestore(path, root);
    return load(file, lock, root);
  } catch (err) {
    file?.close();
    lock.release();
    throw err;
  }
}

/** The error every command but the restore finishing it gives for a volume whose restore is unfinished (FLAG_RESTORE_UNFINISHED). */
export function refuseUnfinishedRestore(path: string, root: RootRecord): void {
  if ((root.flags & FLAG_RESTORE_UNFINISHED) === 0) return;
  throw new BusyError(
    `${path}: a restore into it stopped while it rewrote the active disk in place (its regular snapshots are whole, its disk is part old, part new)`,
    `run that restore again to finish it (imgstream restore --to ${path}, with the same --from or --as-of); volume info, snapshot list and volume check still read it, and volume export ${path}@SNAPSHOT exports a regular snapshot`,
  );
}

/** The volume file at `path`, or the error every command gives: none there, a directory, a protection destination. */
export function statVolume(path: string): fs.Stats {
  if (path === '') throw new InvalidInputError('the volume path is empty', 'give a volume file');
  let st: fs.Stats;
  try {
    st = fs.statSync(path);
  } catch (err) {
    const e = fromSystemError(err, path, 'opening the volume');
    if (e.code === 'not-found') throw new NotFoundError(`${path}: no such volume`, 'create one with: imgstream volume create');
    throw e;
  }
  if (st.isDirectory()) {
    // a protection destination (src/journal) is a directory holding protect.json
    if (fs.existsSync(`${path}/protect.json`)) throw new NotAVolumeError(`${path}: is a protection destination, not a volume`, `rebuild a volume from it with: imgstream restore --to NEW --as-of TIME --from ${path}`);
    throw new NotAVolumeError(`${path}: is a directory, not a volume`);
  }
  refuseNonVolumeFile(path, st);
  return st;
}

/**
 * A read-only view of a volume that another process holds and changes (a server),
 * opened without the lock: the root record and the snapshot table of one CP, read as a
 * seqlock on the generation (read the root, then `load` reads the journal it names if
 * not yet applied and the table; read the root again; retry when the generation moved
 * or the journal did not verify because it was being replaced).
 *
 * Only pinned snapshots may be read through a view (src/control pins them in the
 * server; the active file system and mark-on-allocate planes change under a view,
 * unless the holder opened the volume read-only). A regular snapshot is immutable on
 * disk while it exists: its plane slot is written only while the slot is free
 * (createSnapshot takes a free slot, writeSlotPlane refuses a taken one, restore's
 * clearSlotPlaneExcept clears the free slots it fills), and the blocks its plane holds
 * (its data and logical-map blocks) are never handed out by the allocator, whose
 * pinning planes include every regular snapshot. A pinned snapshot cannot be deleted
 * or renamed, so its slot stays taken and its name means it. A shadow snapshot is the
 * exception: the allocator may reuse its blocks at any time (clearing its bits and
 * counting reusedBlocks), so a reader of one must ask the server afterwards whether
 * reusedBlocks grew while it read.
 */
export function openView<T>(path: string, load: (file: BlockFile, root: RootRecord) => T): T {
  const file = BlockFile.open(path, false);
  const sleeper = new Int32Array(new SharedArrayBuffer(4));
  let lastError: unknown = null;
  try {
    for (let attempt = 0; attempt < 200; attempt++) {
      if (attempt > 0) Atomics.wait(sleeper, 0, 0, Math.min(50, 2 * attempt)); // the holder is mid-CP: let it finish
      const before = readRootRecord(file, path);
      let view: T;
      try {
        view = load(file, before);
      } catch (err) {
        lastError = err; // a journal or table read while the holder rewrote it
        continue;
      }
      if (readRootRecord(file, path).generation === before.generation) return view;
      lastError = null;
    }
  } catch (err) {
    file.close();
    throw err;
  }
  file.close();
  if (lastError) throw lastError;
  throw new BusyError(`${path}: the volume changed on every attempt to read it`, 'its server takes consistency points without pause; try again');
}
