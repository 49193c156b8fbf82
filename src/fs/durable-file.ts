// Files that must appear whole or not at all (a protection destination's state, a
// published tape file): written under a temporary name, fsynced, renamed into place, and
// the directory fsynced so the rename itself survives a power cut. A writer killed before
// its rename leaves its temporary file: the first write of the file in a process removes
// those of processes that are gone.
import fs from 'node:fs';
import path from 'node:path';
import { replacementTarget } from './link-target.js';
import { removeStaleTempOf } from './stale-temp.js';

/** Files whose killed writers' temporary files this process removed already. */
const swept = new Set<string>();

/** Makes the entries of `dir` (a rename, a new or removed file) durable. */
export function fsyncDirectory(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Replaces `file` (where a symbolic link points, when it is one) with `data` atomically and durably. */
export function writeFileDurably(given: string, data: string | Buffer): void {
  const file = replacementTarget(given);
  const tmp = `${file}.${process.pid}.tmp`;
  if (!swept.has(file)) {
    swept.add(file);
    removeStaleTempOf(file);
  }
  const fd = fs.openSync(tmp, 'w', 0o644);
  try {
    fs.writeFileSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  fsyncDirectory(path.dirname(file));
}
