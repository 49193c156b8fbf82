// The uuid of the volume at a path, read from its root record (a view: no lock taken, so a
// served volume is read too), or null when the path holds no volume that opens.
import fs from 'node:fs';
import { Volume } from './volume.js';

export function uuidOfVolumeAt(p: string): string | null {
  try {
    if (!fs.statSync(p).isFile() && !fs.statSync(p).isBlockDevice()) return null;
    const vol = Volume.openView(p);
    try {
      return vol.rootRecord.uuid;
    } finally {
      vol.close();
    }
  } catch {
    return null;
  }
}
