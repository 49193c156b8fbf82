// What imgstream checks before it writes over a block device (volume create, volume
// export, a dump to a device): that the kernel does not hold it (mounted, a swap area, a
// member of LVM, md or dm-crypt: an exclusive open fails then, whatever the flags), and
// what it holds now, so that a file system or partition table is only written over with
// --force, as mkfs.xfs and wipefs ask. The signature comes from blkid's low-level probe
// (util-linux, on every Linux system); where blkid is missing nothing is named, and the
// exclusive open still protects what is in use.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { BusyError, ExistsError, fromSystemError } from '../core/errors.js';

/**
 * Opens a block device for writing, exclusively: a device the kernel holds is refused
 * (exit 7). The caller closes the descriptor.
 */
export function openDeviceExclusive(device: string): number {
  try {
    return fs.openSync(device, fs.constants.O_RDWR | fs.constants.O_EXCL);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EBUSY') {
      throw new BusyError(`${device}: the device is in use (mounted, a swap area, or held by LVM, md or dm-crypt)`, 'unmount it or stop what holds it first');
    }
    throw fromSystemError(err, device, 'opening the device');
  }
}

/** Refuses a device the kernel holds, then closes it again (for writers that open it later their own way). */
export function checkDeviceFree(device: string): void {
  fs.closeSync(openDeviceExclusive(device));
}

/** What blkid finds on the device ("an ext4 file system", "a gpt partition table"), or null. */
export function deviceSignature(device: string): string | null {
  const r = spawnSync('blkid', ['-p', '-o', 'export', device], { encoding: 'utf8', timeout: 10_000 });
  if (r.error || r.status !== 0) return null; // 2: nothing found; blkid missing or failing: nothing named
  const fields = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
  }
  const type = fields.get('TYPE');
  if (type) return `${/^[aeiou]/i.test(type) ? 'an' : 'a'} ${type} ${fields.get('USAGE') === 'raid' || type.endsWith('_member') ? 'volume member' : type === 'swap' ? 'area' : 'file system'}`;
  const pt = fields.get('PTTYPE');
  if (pt) return `a ${pt} partition table`;
  return null;
}

/** Refuses, without --force, to write over a device that holds a file system or partition table (exit 6). */
export function refuseSignature(device: string, force: boolean, what: string): void {
  if (force) return;
  const found = deviceSignature(device);
  if (found) throw new ExistsError(`${device}: holds ${found}, which ${what} would write over`, `pass --force to write over it; wipefs -n ${device} lists what is there`);
}

/**
 * Opens a block device to write `what` over it: exclusively (in use: exit 7, --force or
 * not), and, without --force, only when it holds no file system or partition table (exit 6).
 */
export function openDeviceToWrite(device: string, force: boolean, what: string): number {
  const fd = openDeviceExclusive(device);
  try {
    refuseSignature(device, force, what);
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
  return fd;
}
