// A tape file (or a drive or pipe positioned at one) opened as a tar archive with
// tar-stream's extract, its members read in order. On a drive or a pipe the archive
// reads on past a tape file's end: tar-stream passes over the end-of-archive zeros, so
// tape files sent back to back (cat file0001.tar file0002.tar |) read as the tape's
// successive files, and more() tells whether another one follows.
import fs from 'node:fs';
import { Transform } from 'node:stream';
import tar from 'tar-stream';
import { CorruptError, FormatVersionError, ImgstreamError, fromSystemError } from '../../core/errors.js';
import { TAR_BLOCK, parseMemberName } from './tape-format.js';
import { isZeroBlock } from './tar-header.js';

export interface TapeFileRef {
  /** For messages: "tape /tapes/t1 file 3". */
  name: string;
  /** The tape file, or the tape device positioned at it. */
  path: string;
}

/** A member as tar-stream's extract yields it: its header, then its data. */
export type TarEntry = AsyncIterable<unknown> & { header: tar.Header };

export const DAMAGE_HINT = '`tar tvf` on the tape file shows how far it can be read';

export interface TapeArchive {
  /**
   * The members in order, one iterator for every loop over them: a loop left early does
   * not close the archive (close() does), so the next loop goes on from the next member.
   * A member's data must be read (or destroy the archive) before the next one comes.
   */
  entries: AsyncIterable<TarEntry>;
  /** True when another member follows (kept for the next loop), false at the end of the input. */
  more(): Promise<boolean>;
  /** Reads past members up to and including the `kind` member of `streamId` (the end of a tape file). */
  skipPast(kind: string, streamId: string): Promise<void>;
  /** A failure of reading, as the error naming `name` (default: the tape file opened). */
  asReadError(err: unknown, name?: string): ImgstreamError;
  close(): void;
}

export function openTapeArchive(ref: TapeFileRef, highWaterMark: number): TapeArchive {
  // a tape device returns one record per read and fails a read shorter than a record:
  // read in buffers as large as the largest record
  const input = fs.createReadStream(ref.path, { highWaterMark });
  const extract = tar.extract();
  let ioError: Error | null = null;
  input.on('error', (err) => {
    ioError = err;
    extract.destroy(err);
  });
  // a tape file begins with a tar header; zeros there are a blank (or erased) medium, where
  // tar-stream would read on for the next header to the end of the medium (for ever on /dev/zero)
  const guard = blankGuard(ref);
  guard.on('error', (err) => extract.destroy(err));
  input.pipe(guard).pipe(extract);
  const iter = (extract as AsyncIterable<TarEntry>)[Symbol.asyncIterator]();
  let kept: IteratorResult<TarEntry> | null = null;
  const next = async (): Promise<IteratorResult<TarEntry>> => {
    if (kept) {
      const r = kept;
      kept = null;
      return r;
    }
    return iter.next();
  };
  const entries: AsyncIterable<TarEntry> = {
    [Symbol.asyncIterator]: () => ({ next, return: async () => ({ done: true, value: undefined }) }),
  };
  const close = () => {
    input.destroy();
    guard.destroy();
    extract.destroy();
  };
  const asReadError = (err: unknown, name = ref.name): ImgstreamError => {
    if (err instanceof FormatVersionError) return err.at(name);
    if (err instanceof ImgstreamError) return err;
    if (ioError) return fromSystemError(ioError, ref.path, `reading ${name}`);
    const message = (err as Error)?.message ?? String(err);
    // tar-stream's words for the two ways an archive breaks
    if (/unexpected end of data/i.test(message)) return new CorruptError(`${name}: truncated: the tape file ends inside a tar member`, DAMAGE_HINT);
    if (/invalid( tar)? header/i.test(message)) return new CorruptError(`${name}: damaged tar header (bad checksum, or not a tar archive)`, DAMAGE_HINT);
    return new CorruptError(`${name}: damaged tape file (${message})`, DAMAGE_HINT);
  };
  return {
    entries,
    async more() {
      kept = await next();
      return !kept.done;
    },
    async skipPast(kind, streamId) {
      for await (const entry of entries) {
        for await (const c of entry) void c;
        const m = parseMemberName(entry.header.name);
        if (m?.kind === kind && m.streamId === streamId) return;
      }
      throw new CorruptError(`${ref.name}: truncated: the tape file ends without its ${kind} member`, DAMAGE_HINT);
    },
    asReadError,
    close,
  };
}

/** Passes the tape file through, failing it when its first block is all zeros. */
function blankGuard(ref: TapeFileRef): Transform {
  let head: Buffer | null = Buffer.alloc(0);
  const check = (t: Transform, more: Buffer | null, done: (err?: Error | null) => void) => {
    if (more) head = Buffer.concat([head!, more]);
    if (head!.length < TAR_BLOCK && more) return done();
    const first = head!;
    head = null;
    if (first.length >= TAR_BLOCK && isZeroBlock(first.subarray(0, TAR_BLOCK))) {
      return done(new CorruptError(`${ref.name}: blank: zeros where a tape file begins (a blank or erased tape, or not a tape written by imgstream)`, 'check the tape and its position (mt status)'));
    }
    t.push(first);
    done();
  };
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      if (head === null) return done(null, chunk);
      check(this, chunk, done);
    },
    flush(done) {
      if (head === null) return done();
      check(this, null, done);
    },
  });
}
