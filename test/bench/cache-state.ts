// The page-cache state every measurement starts from, the same for a benchmark and its
// baseline. Always: a global `sync`, so no writeback left by an earlier step is charged
// to the next one. Then either
//   warm: the inputs are read once, so both sides read them from memory (default: needs
//         no privileges, disturbs nothing else on the machine, and measures the product
//         rather than a cold virtual disk whose read speed varies), or
//   cold: the page cache is dropped (/proc/sys/vm/drop_caches, root only), so both sides
//         read their inputs from the disk.
import fs from 'node:fs';
import { spawnSync } from 'node:child_process';

export type CacheMode = 'warm' | 'cold';

/** A file, or a byte range of one, that a measurement reads. */
export interface Input {
  path: string;
  offset?: number;
  bytes?: number;
}

const DROP_CACHES = '/proc/sys/vm/drop_caches';

export function canDropCaches(): boolean {
  try {
    fs.accessSync(DROP_CACHES, fs.constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function syncAll(): void {
  const r = spawnSync('sync', { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`sync failed (${r.error?.message ?? `exit ${r.status}`})`);
}

/** Brings the page cache into the run's state for a measurement that reads `inputs`. */
export function settle(mode: CacheMode, inputs: Input[]): void {
  syncAll();
  if (mode === 'cold') {
    fs.writeFileSync(DROP_CACHES, '3');
    return;
  }
  const buf = Buffer.allocUnsafe(8 << 20);
  for (const input of inputs) {
    const fd = fs.openSync(input.path, 'r');
    try {
      let pos = input.offset ?? 0;
      const end = input.bytes === undefined ? fs.fstatSync(fd).size : pos + input.bytes;
      while (pos < end) {
        const n = fs.readSync(fd, buf, 0, Math.min(buf.length, end - pos), pos);
        if (n === 0) break;
        pos += n;
      }
    } finally {
      fs.closeSync(fd);
    }
  }
}
