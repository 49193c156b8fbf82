// The layout of a tape file: a plain tar archive (so `tar tvf` lists it) whose members
// carry one image stream, written in fixed-size records. Pure: names, sizes and the small
// JSON members, no I/O.
//
//   imgstream/<streamId>/label          first member of every tape file (TapeLabel JSON)
//   imgstream/<streamId>/part-000000    the stream's bytes, cut into members of at most
//   imgstream/<streamId>/part-000001    partBytes; indexes run on across tapes
//   ...
//   imgstream/<streamId>/continued      last member when the stream goes on on the next
//                                       tape (TapeClosing JSON), or
//   imgstream/<streamId>/end            last member where the stream ends (TapeClosing JSON)
//   two zero blocks (end of archive), then zeros up to the end of the record
//
// Every member is one 512-byte ustar header plus its data padded to 512 bytes; names stay
// under 100 bytes (streamId is at most 64 safe characters) so no pax or GNU long-name
// header is ever needed, which makes the size of each member known before it is written:
// the writer uses that to close a tape file properly before the tape is full.

import { FormatVersionError } from '../../core/errors.js';

export const TAPE_FORMAT = 'imgstream-tape';
export const TAPE_FORMAT_VERSION = 1;
export const TAR_BLOCK = 512;
/** Two zero blocks end a tar archive. */
export const END_OF_ARCHIVE_BYTES = 2 * TAR_BLOCK;
/** 20 x 512, tar's traditional blocking factor. */
export const DEFAULT_RECORD_SIZE = 20 * TAR_BLOCK;
/** Readers of tape devices read with a buffer this large, so no record may be larger. */
export const MAX_RECORD_SIZE = 1 << 20;
export const DEFAULT_PART_BYTES = 1 << 20;
export const MAX_PART_BYTES = 64 << 20;
/** Largest label, continued or end member a reader accepts. */
export const MAX_META_BYTES = 64 << 10;
/** Longest user label text. */
export const MAX_LABEL_CHARS = 1024;
/**
 * Bytes a tape file needs after its last part: the continued or end member (header plus
 * one data block: its JSON always fits in 512 bytes) and the end of archive.
 */
export const CLOSING_BYTES = 2 * TAR_BLOCK + END_OF_ARCHIVE_BYTES;

const STREAM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export function isValidStreamId(id: string): boolean {
  return STREAM_ID.test(id);
}

export interface TapeLabel {
  format: typeof TAPE_FORMAT;
  version: typeof TAPE_FORMAT_VERSION;
  streamId: string;
  label: string | null;
  /** 1-based number of this tape within the dump. */
  sequence: number;
  /** Index of the first part member in this tape file. */
  firstPart: number;
  recordSize: number;
  created: string;
  host: string;
  /** Multiplexed tape files only: the volume the stream is a dump of. */
  volume?: { uuid: string; path: string };
}

/** Content of the continued and end members: where the stream stands at that point. */
export interface TapeClosing {
  streamId: string;
  sequence: number;
  /** Parts written so far (the whole stream, not only this tape file). */
  parts: number;
  /** Stream bytes written so far. */
  bytes: number;
}

export type TapeMember =
  | { kind: 'label' | 'continued' | 'end' | 'aborted' | 'multiplex' | 'log'; streamId: string }
  | { kind: 'part'; streamId: string; index: number };

export const memberName = {
  label: (id: string) => `imgstream/${id}/label`,
  part: (id: string, index: number) => `imgstream/${id}/part-${String(index).padStart(6, '0')}`,
  continued: (id: string) => `imgstream/${id}/continued`,
  end: (id: string) => `imgstream/${id}/end`,
  aborted: (id: string) => `imgstream/${id}/aborted`,
  multiplex: (id: string) => `imgstream/${id}/multiplex`,
  log: (id: string) => `imgstream/${id}/log`,
};

// aborted, multiplex and log belong to multiplexed tape files (multiplex-format.ts)
const MEMBER = /^imgstream\/([^/]+)\/(label|continued|end|aborted|multiplex|log|part-(\d{6,}))$/;

export function parseMemberName(name: string): TapeMember | null {
  const m = MEMBER.exec(name);
  if (!m) return null;
  if (m[3] !== undefined) return { kind: 'part', streamId: m[1], index: Number(m[3]) };
  return { kind: m[2] as 'label' | 'continued' | 'end' | 'aborted' | 'multiplex' | 'log', streamId: m[1] };
}

/** Bytes one member takes in the archive: its header and its data padded to 512. */
export function memberBytes(dataBytes: number): number {
  return TAR_BLOCK + Math.ceil(dataBytes / TAR_BLOCK) * TAR_BLOCK;
}

export function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

export function encodeJson(value: object): Buffer {
  return Buffer.from(JSON.stringify(value), 'utf8');
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function parseJson(b: Buffer): Record<string, unknown> | null {
  try {
    const v = JSON.parse(b.toString('utf8'));
    return v && typeof v === 'object' && !Array.isArray(v) ? v : null;
  } catch {
    return null;
  }
}

/**
 * Refuses a JSON member of format `format` whose version is not `version` (a newer
 * imgstream wrote it): FormatVersionError, not damage.
 */
export function refuseOtherVersion(v: Record<string, unknown> | null, format: string, version: number, what: string): void {
  if (v && v.format === format && v.version !== version) throw new FormatVersionError(what, v.version, [version]);
}

/** The label, or null when the bytes are not a label (damage); FormatVersionError for a label of another version. */
export function decodeLabel(b: Buffer): TapeLabel | null {
  const v = parseJson(b);
  refuseOtherVersion(v, TAPE_FORMAT, TAPE_FORMAT_VERSION, 'a tape file');
  const ok =
    v &&
    v.format === TAPE_FORMAT &&
    v.version === TAPE_FORMAT_VERSION &&
    typeof v.streamId === 'string' &&
    isValidStreamId(v.streamId) &&
    (v.label === null || typeof v.label === 'string') &&
    isCount(v.sequence) &&
    (v.sequence as number) >= 1 &&
    isCount(v.firstPart) &&
    isCount(v.recordSize) &&
    typeof v.created === 'string' &&
    typeof v.host === 'string';
  return ok ? (v as unknown as TapeLabel) : null;
}

export function decodeClosing(b: Buffer): TapeClosing | null {
  const v = parseJson(b);
  const ok = v && typeof v.streamId === 'string' && isCount(v.sequence) && isCount(v.parts) && isCount(v.bytes);
  return ok ? (v as unknown as TapeClosing) : null;
}
