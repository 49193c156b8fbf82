// catalog rebuild: the backup logs of the multiplexed tape files it reads go back into
// the catalog (CATALOG.logs/), as the multiplexed dump had put them there.
import { readBackupLog, saveBackupLog, type StoredBackupLog } from '../catalog/backup-logs.js';
import type { Catalog } from '../catalog/catalog.js';
import { indexMultiplexFile, listTapeFiles, parseTapeSpec, readMultiplexLabelAt, type ReadCounter } from '../media/tape/index.js';
import fs from 'node:fs';
import path from 'node:path';

/** Saves the readable backup logs of every multiplexed tape file on the tapes `specs` name (tape:DIR...; other specs are passed over). Returns the ids saved. */
export function rebuildBackupLogs(specs: string[], catalog: Catalog): string[] {
  const found = new Map<string, StoredBackupLog>();
  for (const spec of specs) {
    if (!spec.startsWith('tape:')) continue;
    const t = parseTapeSpec(spec);
    for (const tape of t.tapes) {
      if (!fs.existsSync(tape) || !fs.statSync(tape).isDirectory()) continue;
      for (const f of listTapeFiles(tape)) {
        if (t.file !== undefined && tape === t.tapes[0] && f.number !== t.file) continue;
        const ref = { name: `tape ${tape} file ${f.number}`, path: f.path };
        const counter: ReadCounter = { bytes: 0 };
        let isMux = false;
        const fd = fs.openSync(f.path, 'r');
        try {
          isMux = readMultiplexLabelAt(fd, ref, counter) !== null;
        } finally {
          fs.closeSync(fd);
        }
        if (!isMux) continue;
        let log;
        try {
          log = indexMultiplexFile(ref, counter).log;
        } catch {
          continue; // damaged: verify and restore say how
        }
        if (!log) continue;
        const id = log.header.id;
        const stored = found.get(id) ?? readBackupLog(catalog, id) ?? { id, files: [] };
        stored.files = [...stored.files.filter((x) => x.sequence !== log.header.sequence), { tape: path.resolve(tape), number: f.number, sequence: log.header.sequence, log }].sort((a, b) => a.sequence - b.sequence);
        found.set(id, stored);
      }
    }
  }
  for (const s of found.values()) saveBackupLog(catalog, s);
  return [...found.keys()];
}
