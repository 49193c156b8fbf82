// restore --from tape:DIR --volume X on a tape of plain dumps: a plain dump's tape label
// names no volume, so its streams are picked by the volume uuid in each stream's header.
// X is a uuid (or a prefix of 4+ digits), or a volume's path: the uuid of the volume
// there now, and those the catalog records for dumps taken of that path.
import fs from 'node:fs';
import path from 'node:path';
import type { StreamHeader } from '../format/image-stream.js';
import type { DumpRecord } from '../catalog/index.js';
import { Volume } from '../volume/volume.js';

export interface VolumePick {
  /** True when the stream is a dump of the volume asked for. */
  wants(header: StreamHeader, selector: string): boolean;
  /** The uuids `selector` was taken to name (for the error when no stream matched). */
  named(selector: string): string[];
}

/** The uuid of the volume at `file`, or null (no volume there, or unreadable now). */
export function uuidAt(file: string): string | null {
  try {
    if (!fs.statSync(file).isFile()) return null;
    const vol = Volume.open(file, { write: false });
    try {
      return vol.rootRecord.uuid;
    } finally {
      vol.close();
    }
  } catch {
    return null; // not a volume, gone, or busy: the catalog may still know the path
  }
}

/** `dumps`: the catalog's records (read when a path is first looked up). */
export function volumePick(dumps: () => DumpRecord[]): VolumePick {
  const byPath = new Map<string, string[]>();
  const uuidsOf = (selector: string): string[] => {
    let found = byPath.get(selector);
    if (found) return found;
    const abs = path.resolve(selector);
    const set = new Set<string>();
    const here = uuidAt(selector);
    if (here) set.add(here);
    let records: DumpRecord[] = [];
    try {
      records = dumps();
    } catch {
      // an unreadable catalog: the volume at the path, or the uuid, still picks
    }
    for (const d of records) if (d.volume.path !== null && (d.volume.path === selector || path.resolve(d.volume.path) === abs)) set.add(d.volume.uuid);
    found = [...set];
    byPath.set(selector, found);
    return found;
  };
  return {
    wants(header, selector) {
      const uuid = header.volume.uuid;
      if (selector.length >= 4 && uuid.startsWith(selector.toLowerCase())) return true;
      return uuidsOf(selector).includes(uuid);
    },
    named: uuidsOf,
  };
}
