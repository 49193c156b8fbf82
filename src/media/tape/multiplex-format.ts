// The layout of a multiplexed tape file: several image streams interleaved in one tar
// archive, each member still belonging to exactly one stream, so `tar xf` and `cat
// imgstream/<streamId>/part-*` give any one stream back. Pure: names, JSON members, the
// backup log; no I/O.
//
//   imgstream/<muxId>/multiplex         first member (MultiplexLabel JSON): this tape file
//                                       holds several streams; <muxId> names the set
//   imgstream/<streamId>/label          a stream's label (TapeLabel with its volume), before
//                                       its first part in this tape file
//   imgstream/<streamId>/part-NNNNNN    the streams' parts, in the order they were ready:
//   ...                                 each stream's indexes run on (across tapes too)
//   imgstream/<streamId>/end            a stream complete (TapeClosing), or
//   imgstream/<streamId>/continued      a stream going on on the next tape, or
//   imgstream/<streamId>/aborted        a stream its dump gave up (TapeClosing + error):
//                                       its parts are there but it is not a stream
//   imgstream/<muxId>/log               last member: the backup log (JSON lines, below)
//   two zero blocks, zeros to the end of the record
//
// The backup log has one line per member written before it (the log itself excepted):
// which source and stream, its index in the stream, when it was written, how long the
// tape waited for it, its size and its place (the offset of its tar header in this tape
// file, and that offset in records). Its first line describes the tape file and every
// source. A reader seeks to one stream's members with it; without it (a tape file cut
// short) the members' headers are walked instead, which finds every stream that ended
// before the damage.

import { TAPE_FORMAT, TAPE_FORMAT_VERSION, isValidStreamId, refuseOtherVersion } from './tape-format.js';

export const BACKUP_LOG_FORMAT = 'imgstream-backup-log';

export interface MultiplexLabel {
  format: typeof TAPE_FORMAT;
  version: typeof TAPE_FORMAT_VERSION;
  multiplex: true;
  /** Names the multiplexed dump (all its tape files). */
  id: string;
  label: string | null;
  /** 1-based number of this tape within the multiplexed dump. */
  sequence: number;
  recordSize: number;
  created: string;
  host: string;
  /** The volumes the dump was given, in order (absent in tape files of older versions): a reader front to back knows from the first member whether a choice is needed. */
  volumes?: string[];
}

export type SourceStatus = 'complete' | 'continued' | 'later' | 'earlier' | 'aborted' | 'failed';

/** One source of a multiplexed dump, as the log's first line lists it. */
export interface LogSource {
  /** 0-based, in the order the volumes were given. */
  source: number;
  volume: { path: string; uuid: string | null };
  streamId: string | null;
  /** In this tape file: the stream ended, goes on in the next, was given up; later: nothing of it here yet, it goes on (or starts) in a later tape file; earlier: nothing of it here, it ended (or was given up) in an earlier one, `endedIn`; failed: its dump never wrote to the tape. */
  status: SourceStatus;
  /** Status earlier: the tape (its sequence in the multiplexed dump) holding the stream's end or aborted member. */
  endedIn?: number;
  /** Parts and stream bytes written so far (the whole stream, as its closing member says). */
  parts: number;
  bytes: number;
  error?: string;
}

export interface LogHeader {
  format: typeof BACKUP_LOG_FORMAT;
  version: 1;
  id: string;
  sequence: number;
  recordSize: number;
  host: string;
  /** First and last member written to this tape file. */
  started: string;
  finished: string;
  /** Time the tape waited for any source to have a member ready, between them. */
  idleMs: number;
  sources: LogSource[];
}

export type LoggedKind = 'label' | 'part' | 'end' | 'continued' | 'aborted' | 'multiplex';

export interface LogEntry {
  /** Source number (LogHeader.sources), -1 for the tape file's own multiplex label. */
  source: number;
  stream: string;
  kind: LoggedKind;
  /** Index of a part in its stream (null for the other members). */
  seq: number | null;
  time: string;
  /** Milliseconds the tape waited (no member ready) before this one. */
  waitedMs: number;
  /** Data bytes of the member. */
  size: number;
  /** Offset of the member's tar header in the tape file, and that offset in records. */
  offset: number;
  record: number;
}

export interface BackupLog {
  header: LogHeader;
  entries: LogEntry[];
}

/** Largest log line of one entry (stream ids are at most 64 characters): room reserved per member to come. */
export const MAX_ENTRY_BYTES = 320;

export function encodeLogLine(value: LogHeader | LogEntry): string {
  return `${JSON.stringify(value)}\n`;
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
/** A time as the writer puts it: an ISO date that parses back to itself. */
const isTime = (v: unknown): v is string => typeof v === 'string' && !Number.isNaN(Date.parse(v)) && new Date(v).toISOString() === v;

function parseObject(text: string): Record<string, unknown> | null {
  try {
    const v = JSON.parse(text);
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

export function decodeMultiplexLabel(b: Buffer): MultiplexLabel | null {
  const v = parseObject(b.toString('utf8'));
  refuseOtherVersion(v, TAPE_FORMAT, TAPE_FORMAT_VERSION, 'a multiplexed tape file');
  const ok =
    v &&
    v.format === TAPE_FORMAT &&
    v.version === TAPE_FORMAT_VERSION &&
    v.multiplex === true &&
    typeof v.id === 'string' &&
    isValidStreamId(v.id) &&
    (v.label === null || typeof v.label === 'string') &&
    isCount(v.sequence) &&
    (v.sequence as number) >= 1 &&
    isCount(v.recordSize) &&
    typeof v.created === 'string' &&
    typeof v.host === 'string' &&
    (v.volumes === undefined || (Array.isArray(v.volumes) && v.volumes.every((x) => typeof x === 'string')));
  return ok ? (v as unknown as MultiplexLabel) : null;
}

const KINDS = new Set(['label', 'part', 'end', 'continued', 'aborted', 'multiplex']);

/** The backup log, or null when the text is not one (damaged: readers then walk the members); FormatVersionError for a log of another version. */
export function decodeBackupLog(text: string): BackupLog | null {
  const lines = text.split('\n').filter((l) => l !== '');
  if (lines.length === 0) return null;
  const h = parseObject(lines[0]);
  // a newer log is not a damaged one: walking the members past it could misread them too
  refuseOtherVersion(h, BACKUP_LOG_FORMAT, 1, 'a backup log');
  if (!h || h.format !== BACKUP_LOG_FORMAT || h.version !== 1 || typeof h.id !== 'string' || !isCount(h.sequence) || !Array.isArray(h.sources)) return null;
  if (!isTime(h.started) || !isTime(h.finished) || !isCount(h.idleMs)) return null;
  const entries: LogEntry[] = [];
  for (const line of lines.slice(1)) {
    const e = parseObject(line);
    if (!e || !Number.isSafeInteger(e.source) || typeof e.stream !== 'string' || !KINDS.has(e.kind as string) || !isCount(e.size) || !isCount(e.offset) || !isTime(e.time)) return null;
    if (!isCount(e.waitedMs) || !isCount(e.record) || !(e.seq === null || isCount(e.seq)) || (e.kind === 'part') !== (e.seq !== null)) return null;
    entries.push(e as unknown as LogEntry);
  }
  return { header: h as unknown as LogHeader, entries };
}

export function encodeBackupLog(log: BackupLog): Buffer {
  return Buffer.from(encodeLogLine(log.header) + log.entries.map(encodeLogLine).join(''), 'utf8');
}
