// Writes one image stream as one tape file per tape (see tape-format.ts for its members),
// spanning as many tapes as it needs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ImgstreamError, InvalidInputError, IoError, fromSystemError } from '../../core/errors.js';
import type { MediaPosition, StreamTarget } from '../medium.js';
import {
  CLOSING_BYTES,
  DEFAULT_PART_BYTES,
  DEFAULT_RECORD_SIZE,
  MAX_LABEL_CHARS,
  MAX_PART_BYTES,
  MAX_RECORD_SIZE,
  TAPE_FORMAT,
  TAPE_FORMAT_VERSION,
  TAR_BLOCK,
  encodeJson,
  isValidStreamId,
  memberBytes,
  memberName,
  roundUp,
} from './tape-format.js';
import { TapeFileWriter } from './tape-file-writer.js';
import { discardTapeFiles } from './tape-discard.js';
import { OrphanContinuations } from './tape-orphans.js';
import { TapeLocks } from './tape-locks.js';
import { crashPoint } from '../../volume/crash-point.js';
import {
  type MadeDirectory,
  type TapeKind,
  listTapeFiles,
  openNextTapeFile,
  publishTapeFile,
  removeStalePartials,
  tapeFileName,
  tapeKind,
  usedBytes,
} from './tape-directory.js';

export interface TapeTargetOptions {
  /** Tape directories or tape devices, in the order they are to be used. */
  tapes: string[];
  /** Capacity of one tape in bytes (default: unlimited). */
  tapeSize?: number;
  /** Bytes of every write to the tape: a multiple of 512, default 10240 (20 x 512). */
  recordSize?: number;
  /** Largest part member (default 1 MiB): the writer holds one part in memory. */
  partBytes?: number;
  /**
   * Called when the dump needs tape number n (1-based, counting every tape tried) and
   * `tapes` has no more: the CLI asks "insert tape n" and returns the tape's path (for a
   * drive: the same device again), or null to give up.
   */
  nextTape?: (n: number) => Promise<string | null>;
  /** The image stream's id (header.streamId): names the archive members. */
  streamId: string;
  /** Free text recorded in every tape file's label. */
  label?: string;
  /** Create tape directories that do not exist yet (default); false: a missing tape is an error (the CLI without --new-tape). */
  newTape?: boolean;
  /** Told one line for each tape file of a killed dump the dump removes from its tapes (tape-orphans.ts). */
  notice?: (line: string) => void;
}

interface OpenTapeFile {
  tape: string;
  kind: TapeKind;
  sequence: number;
  /** Directory tapes: the partial file being written. */
  partial: string | null;
  fd: number;
  writer: TapeFileWriter;
  /** Bytes this tape file may take: the room left on the tape, in whole records. */
  limit: number;
}

interface ClosedTapeFile {
  tape: string;
  kind: TapeKind;
  partial: string | null;
  /** Directory tapes, once finish() gave it its name. */
  published: string | null;
  number?: number;
}

/**
 * A stream target writing a tar archive in fixed records: one tape file per tape.
 *
 * Directory tapes (and tests): the dump becomes the next tape file DIR/fileNNNN.tar (one
 * more than the highest number there). It is written as a hidden partial and renamed into
 * place by finish(), after fsync of the file and of the directory; a tape file of a dump
 * spanning several tapes stays partial until the whole dump is finished (continuation
 * files are published first, the first tape file last), so a killed or aborted dump
 * leaves no tape file at all. DIR is created if missing (newTape), when its tape file is
 * begun; a dump that fails or is aborted removes the directories it made once empty.
 *
 * Tape devices (a character device such as /dev/nst0): the dump is written at the
 * current position as one tape file, every write(2) exactly recordSize bytes, and closing
 * the device writes the filemark. The caller positions the tape first (`mt -f /dev/nst0
 * eom` to append) and should use the no-rewind device. The tape file number is unknown
 * to imgstream (MediaPosition.tapeFile is left out; `mt status` tells it). imgstream
 * cannot see the end of a tape coming, so spanning onto another tape needs tapeSize
 * (the capacity from the current position); the next tape comes from nextTape, which
 * prompts the operator to change tapes. abort() cannot take back what reached a device:
 * that tape file ends without its end member, which readers report as incomplete.
 *
 * Spanning: a tape's used bytes are the sizes of its tape files. Before a part would not
 * leave room to close the tape file properly, the part is cut where the tape ends, the
 * tape file gets its continued member, end of archive and padded last record, and the
 * stream goes on in the first tape file of the next tape (the next entry of `tapes`,
 * else nextTape; that tape must hold no tape file yet, but for the continuations a dump
 * killed while it published left there: tape-orphans.ts). A first tape too full for even
 * a small tape file is passed over; a tape too small for one tape file is an error.
 */
export function tapeTarget(opts: TapeTargetOptions): StreamTarget {
  const rs = opts.recordSize ?? DEFAULT_RECORD_SIZE;
  const partBytes = opts.partBytes ?? DEFAULT_PART_BYTES;
  const tapeSize = opts.tapeSize;
  const id = opts.streamId;
  if (opts.tapes.length === 0 || opts.tapes.some((t) => t === '')) throw new InvalidInputError('no tape given', 'give at least one tape: tape:DIR');
  if (!Number.isSafeInteger(rs) || rs <= 0 || rs % TAR_BLOCK !== 0 || rs > MAX_RECORD_SIZE) {
    throw new InvalidInputError(`tape record size ${rs} is not a multiple of 512 between 512 and ${MAX_RECORD_SIZE}`, 'use the default 10240 (20 x 512) or another multiple of 512');
  }
  if (!Number.isSafeInteger(partBytes) || partBytes <= 0 || partBytes > MAX_PART_BYTES) {
    throw new InvalidInputError(`tape part size ${partBytes} is not between 1 and ${MAX_PART_BYTES} bytes`);
  }
  if (tapeSize !== undefined && (!Number.isSafeInteger(tapeSize) || tapeSize <= 0)) {
    throw new InvalidInputError(`tape size ${tapeSize} is not a positive number of bytes`, 'give the capacity of one tape, e.g. 800G');
  }
  if (!isValidStreamId(id)) throw new InvalidInputError(`stream id "${id}" cannot name tape members`, 'stream ids are 1 to 64 letters, digits, ".", "_" or "-"');
  if (opts.label !== undefined && opts.label.length > MAX_LABEL_CHARS) throw new InvalidInputError(`tape label is longer than ${MAX_LABEL_CHARS} characters`);
  tapeKind(opts.tapes[0], opts.newTape ?? true); // fail early on a missing tape, a regular file or an unusable path

  const created = new Date();
  const host = os.hostname();
  const tapes = [...opts.tapes];
  const description = `tape ${opts.tapes.join(',')}`;
  let tapeIndex = -1;
  let current: OpenTapeFile | null = null;
  const closed: ClosedTapeFile[] = [];
  /** Directories made for new tapes: removed again, when empty, if the dump fails. */
  const made: MadeDirectory[] = [];
  let part = Buffer.allocUnsafe(partBytes);
  let fill = 0;
  let parts = 0;
  let bytes = 0;
  let failure: ImgstreamError | null = null;
  let state: 'writing' | 'finished' | 'aborted' = 'writing';
  let queue: Promise<unknown> = Promise.resolve();
  const orphans = new OrphanContinuations(opts.notice);
  // the tapes are this dump's from before the first is sized until its files are published or removed
  const locks = new TapeLocks(opts.notice);
  let locked: Promise<void> | null = null;
  const lockTapes = (): Promise<void> => {
    if (!locked) {
      locked = locks.take(opts.tapes);
      locked.catch(() => {}); // a wait a stop ended: the stop is the error said
    }
    return locked;
  };

  async function nextTapePath(): Promise<string> {
    if (tapeIndex + 1 < tapes.length) return tapes[tapeIndex + 1];
    const next = opts.nextTape ? await opts.nextTape(tapes.length + 1) : null;
    if (next === null || next === undefined || next === '') {
      throw new InvalidInputError(`tape ${tapes[tapes.length - 1]} is full and no next tape was given`, 'give more tapes: tape:DIR1,DIR2,...');
    }
    tapes.push(next);
    return next;
  }

  async function openTapeFile(continuation: boolean): Promise<void> {
    await lockTapes();
    for (;;) {
      const tape = await nextTapePath();
      tapeIndex++;
      const kind = tapeKind(tape, opts.newTape ?? true);
      await orphans.sweep(tapes); // before the stale partials go: they tell the orphans
      let files: ReturnType<typeof listTapeFiles> = [];
      if (kind === 'directory') {
        const dir = path.resolve(tape);
        if (closed.some((c) => c.kind === 'directory' && path.resolve(c.tape) === dir)) {
          throw new InvalidInputError(`tape ${tape} is given twice for one dump`, 'give each tape directory once: tape:DIR1,DIR2,...');
        }
        if (fs.existsSync(tape)) {
          removeStalePartials(tape);
          files = listTapeFiles(tape);
        }
      }
      if (continuation && files.length > 0) {
        throw new InvalidInputError(
          `tape ${tape} already holds ${files.length} tape file(s): the dump continued from tape ${closed[closed.length - 1].tape} needs an empty tape`,
          'give an empty tape (a new directory) as the next tape',
        );
      }
      const sequence = closed.length + 1;
      const label = encodeJson({ format: TAPE_FORMAT, version: TAPE_FORMAT_VERSION, streamId: id, label: opts.label ?? null, sequence, firstPart: parts, recordSize: rs, created: created.toISOString(), host });
      const used = usedBytes(files);
      const limit = tapeSize === undefined ? Infinity : Math.max(0, Math.floor((tapeSize - used) / rs) * rs);
      const least = roundUp(memberBytes(label.length) + memberBytes(1) + CLOSING_BYTES, rs);
      if (limit < least) {
        if (used === 0) {
          throw new InvalidInputError(`tape ${tape} is too small: ${tapeSize} bytes cannot hold one tape file (at least ${least} bytes in ${rs}-byte records)`, 'give a larger tape size');
        }
        continue; // this tape is full: the dump starts on the next one
      }
      const opened = openNextTapeFile(tape, kind, files);
      const { fd, partial, what } = opened;
      if (opened.made) made.push(opened.made);
      current = { tape, kind, sequence, partial, fd, limit, writer: new TapeFileWriter(fd, rs, limit, what, created) };
      await current.writer.add(memberName.label(id), label);
      return;
    }
  }

  /** Largest part that still fits in the current tape file, leaving room to close it. */
  function room(): number {
    if (!current) return 0;
    const free = current.limit - current.writer.archiveBytes - TAR_BLOCK - CLOSING_BYTES;
    return free === Infinity ? Infinity : Math.max(0, Math.floor(free / TAR_BLOCK) * TAR_BLOCK);
  }

  async function closeTapeFile(ending: 'continued' | 'end'): Promise<void> {
    const c = current!;
    await c.writer.add(memberName[ending](id), encodeJson({ streamId: id, sequence: c.sequence, parts, bytes }));
    await c.writer.close();
    try {
      if (c.kind === 'directory') fs.fsyncSync(c.fd);
      fs.closeSync(c.fd); // on a no-rewind tape device this writes the filemark
    } catch (err) {
      throw fromSystemError(err, c.tape, 'closing the tape file');
    }
    current = null;
    closed.push({ tape: c.tape, kind: c.kind, partial: c.partial, published: null });
  }

  /** Writes the buffered bytes as parts: full parts, and at the end whatever is left. */
  async function placeParts(final: boolean): Promise<void> {
    while (fill >= partBytes || (final && fill > 0)) {
      if (!current) await openTapeFile(false);
      const n = Math.min(fill, partBytes);
      const r = room();
      if (r === 0) {
        await closeTapeFile('continued');
        await openTapeFile(true);
        continue;
      }
      const k = Math.min(n, r);
      const data = part.subarray(0, k);
      const rest = Buffer.allocUnsafe(partBytes); // the pack still holds `data`
      part.copy(rest, 0, k, fill);
      part = rest;
      fill -= k;
      await current!.writer.add(memberName.part(id, parts), data);
      parts++;
      bytes += k;
      if (k < n) {
        await closeTapeFile('continued');
        await openTapeFile(true);
      }
    }
  }

  /** Removes every trace of this dump it can (never throws). */
  function discard(): void {
    discardTapeFiles(current, closed.splice(0), made.splice(0));
    current = null;
    locks.release();
  }

  function run<T>(op: () => Promise<T>): Promise<T> {
    const p = queue.then(async () => {
      if (failure) throw failure;
      if (state !== 'writing') throw new IoError(`${description}: the stream was already ${state}`, 'start a new dump');
      try {
        return await op();
      } catch (err) {
        failure = fromSystemError(err, description, 'writing to tape');
        discard();
        throw failure;
      }
    });
    queue = p.catch(() => {});
    return p;
  }

  return {
    description,
    /** Waits while another dump writes to these tapes (before the dump takes its snapshot). */
    open(): Promise<void> {
      return lockTapes();
    },
    write(data: Buffer): Promise<void> {
      return run(async () => {
        for (let off = 0; off < data.length; ) {
          const c = Math.min(partBytes - fill, data.length - off);
          data.copy(part, fill, off, off + c);
          fill += c;
          off += c;
          if (fill === partBytes) await placeParts(false);
        }
      });
    },
    finish(): Promise<MediaPosition> {
      return run(async () => {
        await placeParts(true);
        if (!current) await openTapeFile(false); // an empty stream still gets its tape file
        await closeTapeFile('end');
        // continuation files first, the first tape file last: the dump appears at once
        for (let i = closed.length - 1; i >= 0; i--) {
          const c = closed[i];
          if (c.kind !== 'directory' || !c.partial) continue;
          crashPoint('tape-publish', c.tape);
          c.number = publishTapeFile(c.tape, c.partial);
          c.published = path.join(c.tape, tapeFileName(c.number));
          c.partial = null;
        }
        state = 'finished';
        locks.release();
        const first = closed[0];
        return {
          kind: 'tape',
          location: path.resolve(first.tape),
          ...(first.number !== undefined ? { tapeFile: first.number } : {}),
          tapes: closed.map((c) => path.resolve(c.tape)),
        };
      });
    },
    async abort(): Promise<void> {
      locks.release(); // a wait for the tapes ends
      await queue;
      if (state !== 'writing') return;
      state = 'aborted';
      discard();
    },
  };
}
