// `tape log`: the backup log of a multiplexed tape file, read from the tape file's last
// member (or, when that is damaged or cut off, from the catalog's copy), and the summary
// made from it: per source totals, and how long the tape waited for data.
import { CorruptError, InvalidInputError, NotFoundError } from '../core/errors.js';
import { readBackupLog } from '../catalog/backup-logs.js';
import type { Catalog } from '../catalog/catalog.js';
import { listTapeFiles, parseTapeSpec } from '../media/tape/index.js';
import { indexMultiplexFile, readMultiplexLabelAt, type ReadCounter } from '../media/tape/index.js';
import type { BackupLog, SourceStatus } from '../media/tape/index.js';
import fs from 'node:fs';

export interface TapeLogResult {
  tapeFile: string;
  /** Where the log was read: the tape file's log member, or the catalog's copy. */
  from: 'tape' | 'catalog';
  log: BackupLog;
}

export interface SourceSummary {
  source: number;
  volume: { path: string; uuid: string | null };
  streamId: string | null;
  status: SourceStatus;
  /** Status earlier: the tape of the set its stream ended on. */
  endedIn?: number;
  error?: string;
  members: number;
  parts: number;
  /** Data bytes of its parts in this tape file. */
  bytes: number;
  first: string | null;
  last: string | null;
}

export interface LogSummary {
  id: string;
  sequence: number;
  members: number;
  bytes: number;
  started: string;
  finished: string;
  elapsedMs: number;
  idleMs: number;
  /** idleMs / elapsedMs: the share of the time the tape waited for data. */
  idleFraction: number;
  sources: SourceSummary[];
}

/** The log of tape file `spec` (tape:DIR#N). */
export function readTapeLog(spec: string, catalog: Catalog | null): TapeLogResult {
  const t = parseTapeSpec(spec);
  const dir = t.tapes[0];
  if (t.tapes.length > 1) throw new InvalidInputError(`${spec}: tape log reads one tape file of one tape, and ${t.tapes.length} tapes are given`, 'each tape file of a set has its own log: imgstream tape log tape:DIR#N, once for each tape');
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  if (!st) throw new NotFoundError(`tape ${dir}: no such tape directory`, 'a multiplexed tape file is read from a tape directory (copy it from a drive with dd first)');
  if (!st.isDirectory()) throw new InvalidInputError(`tape ${dir}: not a tape directory (${st.isFile() ? 'a file' : 'a device or a pipe'}), and tape log reads a tape file in one`, 'a multiplexed tape file is read from a tape directory: copy it there first (dd if=/dev/nst0 of=DIR/file0001.tar bs=10k), then imgstream tape log tape:DIR#1');
  if (t.file === undefined) {
    // the tape's files, so the user can pick one (and verify says what each holds)
    const files = listTapeFiles(dir).map((f) => f.number);
    const holds = files.length === 0 ? 'it holds no tape file' : files.length === 1 ? `it holds file ${files[0]}` : `it holds files ${files[0]} to ${files[files.length - 1]}`;
    throw new InvalidInputError(`${spec}: give one tape file of it, as tape:DIR#N (${holds})`, `imgstream tape log tape:${dir}#${files.at(-1) ?? 1}; imgstream verify tape:${dir} lists what each file holds`);
  }
  const files = listTapeFiles(dir);
  const file = files.find((f) => f.number === t.file);
  if (!file) {
    const held = files.length ? `it holds tape files ${files[0].number} to ${files[files.length - 1].number}` : 'it holds no tape file';
    throw new NotFoundError(`tape ${dir} has no tape file ${t.file}`, held);
  }
  const ref = { name: `tape ${dir} file ${t.file}`, path: file.path };
  const counter: ReadCounter = { bytes: 0 };
  const fd = fs.openSync(ref.path, 'r');
  let muxId: string;
  try {
    const label = readMultiplexLabelAt(fd, ref, counter);
    if (!label) throw new InvalidInputError(`${ref.name} is not a multiplexed tape file: it has no backup log`, 'only dumps written with --multiplex have one; imgstream verify lists what a tape file holds');
    muxId = label.id;
  } finally {
    fs.closeSync(fd);
  }
  const index = indexMultiplexFile(ref, counter);
  if (index.log) return { tapeFile: ref.name, from: 'tape', log: index.log };
  const stored = catalog ? readBackupLog(catalog, muxId) : null;
  const copy = stored?.files.find((f) => f.sequence === index.label.sequence);
  if (copy) return { tapeFile: ref.name, from: 'catalog', log: copy.log };
  const why = index.damage === null || /backup log is missing or damaged/.test(index.damage) ? '' : ` (${index.damage})`;
  throw new CorruptError(`${ref.name}: its backup log is missing or damaged${why}, and the catalog has no copy`, 'imgstream verify still finds every stream that completed');
}

/** A source's status as tape log prints it: `earlier` says on which tape the stream ended. */
export function describeStatus(s: { status: SourceStatus; endedIn?: number }): string {
  return s.status === 'earlier' ? `earlier (ended on tape ${s.endedIn ?? '?'})` : s.status;
}

export function summarizeLog(log: BackupLog): LogSummary {
  const h = log.header;
  const sources: SourceSummary[] = h.sources.map((s) => ({ source: s.source, volume: s.volume, streamId: s.streamId, status: s.status, ...(s.endedIn !== undefined ? { endedIn: s.endedIn } : {}), ...(s.error ? { error: s.error } : {}), members: 0, parts: 0, bytes: 0, first: null, last: null }));
  let bytes = 0;
  for (const e of log.entries) {
    bytes += e.size;
    const s = sources[e.source];
    if (!s) continue;
    s.members++;
    if (e.kind === 'part') {
      s.parts++;
      s.bytes += e.size;
    }
    s.first ??= e.time;
    s.last = e.time;
  }
  const elapsedMs = Math.max(0, Date.parse(h.finished) - Date.parse(h.started));
  return { id: h.id, sequence: h.sequence, members: log.entries.length, bytes, started: h.started, finished: h.finished, elapsedMs, idleMs: h.idleMs, idleFraction: elapsedMs > 0 ? h.idleMs / elapsedMs : 0, sources };
}
