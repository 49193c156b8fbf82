// One way for commands to reach a volume whoever holds it: opened here with its lock
// (LocalVolume, as always), or, when a server holds the lock and advertises a control
// socket, through that server (ServedVolume). Both answer with the same values, so a
// command prints the same output either way. A lock holder that is dead (kill -9) is
// ignored: its lock is stale and the volume is opened here.
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { StorageImageSummary } from '../image/index.js';
import { noProgress, type Progress } from '../core/progress.js';
import { checkVolume, type CheckReport } from '../volume/check.js';
import { volumeInfo, type VolumeInfo } from '../volume/info.js';
import { storageImageOf } from '../volume/storage-image-of.js';
import { Volume } from '../volume/volume.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { ServedVolume, type SnapshotCreateOptions } from './served-volume.js';

export interface VolumeAccess {
  readonly kind: 'local' | 'served';
  /** The path the caller named the volume by (messages and results use it). */
  readonly path: string;
  readonly blockSize: number;
  snapshots(): Promise<SnapshotEntry[]>;
  createSnapshot(name: string, opts?: SnapshotCreateOptions): Promise<SnapshotEntry>;
  deleteSnapshot(name: string): Promise<SnapshotEntry>;
  renameSnapshot(from: string, to: string): Promise<SnapshotEntry>;
  /** Makes a regular snapshot a shadow one (see Volume.shadowSnapshot). */
  shadowSnapshot(name: string): Promise<SnapshotEntry>;
  info(): Promise<VolumeInfo>;
  image(expression: string, opts?: { ranges?: boolean }, progress?: Progress): Promise<StorageImageSummary>;
  check(progress?: Progress): Promise<CheckReport>;
  close(): void;
}

/** A volume this process opened (and locked). */
export class LocalVolume implements VolumeAccess {
  readonly kind = 'local';
  constructor(readonly volume: Volume) {}

  get path(): string {
    return this.volume.path;
  }
  get blockSize(): number {
    return this.volume.blockSize;
  }
  async snapshots(): Promise<SnapshotEntry[]> {
    return this.volume.snapshots();
  }
  async createSnapshot(name: string, opts: SnapshotCreateOptions = {}): Promise<SnapshotEntry> {
    return this.volume.createSnapshot(name, { shadow: opts.shadow, master: opts.master });
  }
  async deleteSnapshot(name: string): Promise<SnapshotEntry> {
    return this.volume.deleteSnapshot(name);
  }
  async renameSnapshot(from: string, to: string): Promise<SnapshotEntry> {
    return this.volume.renameSnapshot(from, to);
  }
  async shadowSnapshot(name: string): Promise<SnapshotEntry> {
    return this.volume.shadowSnapshot(name);
  }
  async info(): Promise<VolumeInfo> {
    return volumeInfo(this.volume);
  }
  async image(expression: string, opts: { ranges?: boolean } = {}, progress: Progress = noProgress): Promise<StorageImageSummary> {
    return storageImageOf(this.volume, expression, opts, progress);
  }
  async check(progress: Progress = noProgress): Promise<CheckReport> {
    return checkVolume(this.volume, progress);
  }
  close(): void {
    this.volume.close();
  }
}

/**
 * The volume at `path`: through its server when one serves it (and answers on its control
 * socket), else opened here (`write`: for writing), which fails with "busy" when another
 * process holds it.
 */
export async function openVolumeAccess(path: string, opts: { write: boolean; unfinishedRestore?: boolean; keepsDisk?: boolean }): Promise<LocalVolume | ServedVolume> {
  const holder = VolumeLock.holder(path);
  if (holder?.control && holder.pid !== process.pid) {
    try {
      return await ServedVolume.connect(path, holder);
    } catch {
      // nothing answers (it is stopping, or starting): opening it here says "busy"
    }
  }
  return new LocalVolume(Volume.open(path, opts));
}

/** Opens the volume (see openVolumeAccess), runs fn, closes it whatever happens. */
export async function withVolumeAccess<T>(path: string, opts: { write: boolean; unfinishedRestore?: boolean }, fn: (v: LocalVolume | ServedVolume) => T | Promise<T>): Promise<T> {
  const v = await openVolumeAccess(path, opts);
  try {
    return await fn(v);
  } finally {
    v.close();
  }
}
