// Whether a tape file's stream goes on on the next tape, read from its last blocks: the
// tape order check needs it for the last tape file of every tape, and reading a whole
// tape file to its end for that would read the dump. A tape file ends with its continued
// or end member (header and one block of JSON), the end of archive and zeros to the end
// of the record; a multiplexed one with its backup log, which says which streams go on.
import fs from 'node:fs';
import { MAX_RECORD_SIZE, TAR_BLOCK, END_OF_ARCHIVE_BYTES, decodeClosing, parseMemberName, roundUp } from './tape-format.js';
import { decodeTarHeader, isZeroBlock } from './tar-header.js';
import { indexMultiplexFile } from './multiplex-reader.js';
import type { TapeFileLabel, TapeFileRef } from './tape-file-reader.js';

/** Zeros a tape file may end in: the end of archive and the padding of its last record. */
const MAX_TRAILING_ZEROS = END_OF_ARCHIVE_BYTES + MAX_RECORD_SIZE;

/** A stream that goes on on the next tape: its id, and in a multiplexed tape file its volume. */
export interface ContinuedStream {
  streamId: string;
  multiplexed: boolean;
  volume: { path: string; uuid: string | null } | null;
}

/**
 * True when the tape file (whose label is `label`) ends in a continued member, false when
 * in an end member; null when that cannot be told from its end (a damaged or truncated
 * tape file: the reader names the damage when it gets there). Never throws.
 */
export function tapeFileContinues(ref: TapeFileRef, label: TapeFileLabel): boolean | null {
  const going = continuedStreams(ref, label);
  return going === null ? null : going.length > 0;
}

/**
 * The streams of the tape file that go on on the next tape ([] when every one ends
 * there); null when that cannot be told from its end. Never throws.
 */
export function continuedStreams(ref: TapeFileRef, label: TapeFileLabel): ContinuedStream[] | null {
  try {
    if (label.multiplex) {
      const index = indexMultiplexFile(ref, { bytes: 0 });
      if (!index.log) return null;
      const ids = [...new Set(index.members.filter((m) => m.kind === 'continued').map((m) => m.streamId))];
      return ids.map((streamId) => ({ streamId, multiplexed: true, volume: index.streams.find((s) => s.streamId === streamId)?.volume ?? null }));
    }
    const continues = singleStreamContinues(ref, label);
    return continues === null ? null : continues ? [{ streamId: label.streamId, multiplexed: false, volume: null }] : [];
  } catch {
    return null;
  }
}

function singleStreamContinues(ref: TapeFileRef, label: TapeFileLabel): boolean | null {
  const fd = fs.openSync(ref.path, 'r');
  try {
    const size = Math.floor(fs.fstatSync(fd).size / TAR_BLOCK) * TAR_BLOCK;
    // the closing member's header, its data block, then nothing but zeros
    const span = Math.min(size, MAX_TRAILING_ZEROS + 2 * TAR_BLOCK);
    const tail = Buffer.alloc(span);
    if (fs.readSync(fd, tail, 0, span, size - span) !== span) return null;
    let end = span;
    while (end > 0 && isZeroBlock(tail.subarray(end - TAR_BLOCK, end))) end -= TAR_BLOCK;
    if (end < 2 * TAR_BLOCK) return null;
    const h = decodeTarHeader(tail.subarray(end - 2 * TAR_BLOCK, end - TAR_BLOCK));
    const m = h && parseMemberName(h.name);
    if (!h || !m || m.streamId !== label.streamId || (m.kind !== 'continued' && m.kind !== 'end') || roundUp(h.size, TAR_BLOCK) !== TAR_BLOCK) return null;
    const closing = decodeClosing(tail.subarray(end - TAR_BLOCK, end - TAR_BLOCK + h.size));
    if (!closing || closing.streamId !== label.streamId || closing.sequence !== label.sequence) return null;
    return m.kind === 'continued';
  } finally {
    fs.closeSync(fd);
  }
}
