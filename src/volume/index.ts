// Volumes: the on-disk engine (write-anywhere logical map, bit planes, journaled CPs,
// snapshots) and the operations on it (import, export, check, info). May import
// ../format, ../errors, ../progress, ../image/plane-source; never prints, never imports
// the CLI.
import { Volume } from './volume.js';

export * from './volume.js';
export * from './import.js';
export * from './export.js';
export * from './check.js';
export * from './info.js';
export * from './image-io.js';
export * from './snapshot-name.js';
export { VolumeLayout, DEFAULT_BLOCK_SIZE, DEFAULT_MAX_SNAPSHOTS, PLANE_ACTIVE, PLANE_MOA } from './layout.js';

/** Opens a volume, runs fn, closes it (and releases its lock) whatever happens. */
export async function withVolume<T>(path: string, write: boolean, fn: (vol: Volume) => T | Promise<T>): Promise<T> {
  const vol = Volume.open(path, { write });
  try {
    return await fn(vol);
  } finally {
    vol.close();
  }
}
export * from './storage-image-of.js';
