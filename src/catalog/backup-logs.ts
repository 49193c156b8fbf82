// The backup logs of multiplexed dumps, kept with the catalog: one JSON file per
// multiplexed dump in CATALOG.logs/ beside the catalog file (the file a symbolic link to it ends at; a log has a line per tape
// member, too many to rewrite with every catalog update). Each is written beside and
// renamed into place, so a crash leaves the old file or the new one. The same log is the
// last member of each tape file; `catalog rebuild` writes it here again from there.
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, FormatVersionError, fromSystemError } from '../core/errors.js';
import { BACKUP_LOG_FORMAT, type BackupLog } from '../media/tape/multiplex-format.js';
import type { Catalog } from './catalog.js';
import { readTextFile } from '../fs/text-file.js';
import { makeDirectories } from '../core/make-dirs.js';
import { replacementTarget } from '../fs/link-target.js';

export interface StoredBackupLog {
  /** The multiplexed dump's id (its tape files' multiplex member). */
  id: string;
  /** Its tape files, in order: where each is and its log. */
  files: Array<{ tape: string; number?: number; sequence: number; log: BackupLog }>;
}

/** Beside the catalog file itself: a catalog shared through a symbolic link shares its logs too (they were kept beside the link). */
export function backupLogDir(catalog: Catalog): string {
  return `${replacementTarget(catalog.file)}.logs`;
}

export function saveBackupLog(catalog: Catalog, stored: StoredBackupLog): string {
  const dir = backupLogDir(catalog);
  const file = path.join(dir, `${stored.id}.json`);
  const tmp = `${file}.new-${process.pid}`;
  try {
    makeDirectories(dir);
    const fd = fs.openSync(tmp, 'w');
    fs.writeSync(fd, `${JSON.stringify(stored)}\n`);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw fromSystemError(err, file, 'writing the backup log');
  }
  return file;
}

/** The stored log of multiplexed dump `id`, or null when the catalog has none. */
export function readBackupLog(catalog: Catalog, id: string): StoredBackupLog | null {
  // (and beside the link, where earlier versions kept the logs of a catalog reached through one)
  const dirs = [...new Set([backupLogDir(catalog), `${catalog.file}.logs`])];
  let file = '';
  let text: string | null = null;
  for (const dir of dirs) {
    file = path.join(dir, `${id}.json`);
    try {
      text = readTextFile(file, 'a backup log');
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, file, 'reading the backup log');
    }
  }
  if (text === null) return null;
  let v: StoredBackupLog;
  try {
    v = JSON.parse(text) as StoredBackupLog;
    if (v.id !== id || !Array.isArray(v.files)) throw new Error('not a backup log');
  } catch {
    throw new CorruptError(`${file}: not a readable backup log`, 'rebuild it from the tape: imgstream catalog rebuild --from tape:DIR');
  }
  // a newer imgstream's log is neither read nor rewritten (catalog rebuild would downgrade it)
  const newer = v.files.find((f) => f?.log?.header?.version !== 1);
  if (newer && newer.log?.header?.format === BACKUP_LOG_FORMAT) throw new FormatVersionError('a backup log', newer.log.header.version, [1], file);
  return v;
}
