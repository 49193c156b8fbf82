// Reads one tape file with tar-stream's extract: its label, then its parts as they arrive
// (never a whole part in memory), then its continued or end member. Damage of any kind
// (a bad header checksum, a truncated archive, members out of order) is a CorruptError
// naming the tape file; a failing read is the operating system's error.
import fs from 'node:fs';
import { Transform } from 'node:stream';
import tar from 'tar-stream';
import { CorruptError, FormatVersionError, ImgstreamError, InvalidInputError, fromSystemError } from '../../core/errors.js';
import {
  MAX_META_BYTES,
  MAX_RECORD_SIZE,
  TAR_BLOCK,
  type TapeClosing,
  type TapeLabel,
  decodeClosing,
  decodeLabel,
  parseMemberName,
} from './tape-format.js';
import { decodeMultiplexLabel, type MultiplexLabel } from './multiplex-format.js';
import { isZeroBlock } from './tar-header.js';
import { ambiguousVolumes, followStream, type MultiplexSelection, type SequentialMember } from './multiplex-sequential.js';

export interface TapeFileRef {
  /** For messages: "tape /tapes/t1 file 3". */
  name: string;
  /** The tape file, or the tape device positioned at it. */
  path: string;
}

/** Where the reading of a stream stands, carried from one tape file to the next. */
export interface StreamProgress {
  parts: number;
  bytes: number;
  /** The stream's id, once a label said it. */
  streamId: string | null;
}

export type TapeFileEnding = TapeClosing & { kind: 'continued' | 'end' };

/** A member as tar-stream's extract yields it: its header, then its data. */
type TarEntry = AsyncIterable<unknown> & { header: tar.Header };

const DAMAGE_HINT = '`tar tvf` on the tape file shows how far it can be read';

function openArchive(ref: TapeFileRef, highWaterMark: number) {
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
  const close = () => {
    input.destroy();
    guard.destroy();
    extract.destroy();
  };
  const asReadError = (err: unknown): ImgstreamError => {
    if (err instanceof FormatVersionError) return err.at(ref.name);
    if (err instanceof ImgstreamError) return err;
    if (ioError) return fromSystemError(ioError, ref.path, `reading ${ref.name}`);
    const message = (err as Error)?.message ?? String(err);
    // tar-stream's words for the two ways an archive breaks
    if (/unexpected end of data/i.test(message)) return new CorruptError(`${ref.name}: truncated: the tape file ends inside a tar member`, DAMAGE_HINT);
    if (/invalid( tar)? header/i.test(message)) return new CorruptError(`${ref.name}: damaged tar header (bad checksum, or not a tar archive)`, DAMAGE_HINT);
    return new CorruptError(`${ref.name}: damaged tape file (${message})`, DAMAGE_HINT);
  };
  return { extract, close, asReadError };
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

/** The members after the first, as followStream reads them. */
async function* sequentialMembers(extract: AsyncIterable<TarEntry>, ref: TapeFileRef): AsyncGenerator<SequentialMember> {
  for await (const entry of extract) {
    const name = parseMemberName(entry.header.name);
    if (!name) throw new CorruptError(`${ref.name}: unexpected member ${entry.header.name}`, DAMAGE_HINT);
    let consumed = false;
    yield {
      name,
      meta: () => {
        consumed = true;
        return readMeta(entry, ref);
      },
      async *chunks() {
        consumed = true;
        for await (const c of entry) yield c as Buffer;
      },
      skip: async () => {
        consumed = true;
        for await (const c of entry) void c;
      },
    };
    if (!consumed) for await (const c of entry) void c;
  }
}

async function readMeta(entry: TarEntry, ref: TapeFileRef): Promise<Buffer> {
  if (entry.header.size > MAX_META_BYTES) throw new CorruptError(`${ref.name}: member ${entry.header.name} is too large (${entry.header.size} bytes)`, DAMAGE_HINT);
  const chunks: Buffer[] = [];
  for await (const c of entry) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** A tape file's label; a multiplexed tape file's says `multiplex` and its streamId is the multiplexed dump's id. */
export type TapeFileLabel = TapeLabel & { multiplex?: true };

/**
 * A multiplexed tape file read front to back without --volume (or a stream id) must hold
 * one volume's dumps: its label lists the volumes, so more than one is refused before
 * anything is restored (tape files of older versions lack the list: followStream then
 * refuses at the second volume's label, if it comes before the first stream's end).
 */
function refuseAmbiguousChoice(mux: MultiplexLabel, where: string, select: MultiplexSelection, progress: StreamProgress): void {
  if (select.volume !== undefined || select.stream !== undefined || progress.streamId !== null) return;
  const volumes = [...new Set(mux.volumes ?? [])];
  if (volumes.length > 1) {
    throw ambiguousVolumes(where, volumes);
  }
}

/** The label of a tape file (its first member). */
export async function readTapeLabel(ref: TapeFileRef): Promise<TapeFileLabel> {
  const { extract, close, asReadError } = openArchive(ref, 64 << 10);
  try {
    for await (const entry of extract) {
      const m = parseMemberName(entry.header.name);
      if (m?.kind === 'multiplex') {
        const mux = decodeMultiplexLabel(await readMeta(entry, ref));
        if (!mux || mux.id !== m.streamId) throw new CorruptError(`${ref.name}: damaged multiplex label`, DAMAGE_HINT);
        const { id, multiplex, ...rest } = mux;
        return { ...rest, streamId: id, firstPart: 0, multiplex };
      }
      if (!m || m.kind !== 'label') throw new CorruptError(`${ref.name}: not an imgstream tape file (its first member is ${entry.header.name})`, 'only tape files written by imgstream dump can be read');
      const label = decodeLabel(await readMeta(entry, ref));
      if (!label || label.streamId !== m.streamId) throw new CorruptError(`${ref.name}: damaged label`, DAMAGE_HINT);
      return label;
    }
    throw new CorruptError(`${ref.name}: empty or damaged tape file (no tar member)`, DAMAGE_HINT);
  } catch (err) {
    throw asReadError(err);
  } finally {
    close();
  }
}

/**
 * Yields the part bytes of tape `sequence` of the stream from one tape file and returns
 * its ending. `progress` counts parts and bytes across the stream's tape files and holds
 * the stream's id (null before its first tape file is read: the label then says it).
 */
export async function* readTapeFileParts(ref: TapeFileRef, sequence: number, progress: StreamProgress, select?: MultiplexSelection): AsyncGenerator<Buffer, TapeFileEnding> {
  const { extract, close, asReadError } = openArchive(ref, MAX_RECORD_SIZE);
  const corrupt = (what: string) => new CorruptError(`${ref.name}: ${what}`, DAMAGE_HINT);
  // one iterator, so a multiplexed file's members can be handed on from inside the loop
  const iter = (extract as AsyncIterable<TarEntry>)[Symbol.asyncIterator]();
  const entries: AsyncIterable<TarEntry> = { [Symbol.asyncIterator]: () => iter };
  try {
    let label: TapeLabel | null = null;
    for await (const entry of entries) {
      const m = parseMemberName(entry.header.name);
      if (!label) {
        if (m?.kind === 'multiplex') {
          // a file is read by seeking (multiplex-reader.ts); a drive or a pipe front to back, past the other streams
          if (!select) throw new InvalidInputError(`${ref.name} is a multiplexed tape file: read it from a tape directory or a tape device`, 'give tape:DIR or tape:/dev/nstN');
          const mux = decodeMultiplexLabel(await readMeta(entry, ref));
          if (!mux || mux.id !== m.streamId) throw corrupt('damaged multiplex label');
          refuseAmbiguousChoice(mux, ref.name, select, progress);
          return yield* followStream(sequentialMembers(entries, ref), ref.name, select, progress);
        }
        if (!m || m.kind !== 'label') throw corrupt(`not an imgstream tape file (its first member is ${entry.header.name})`);
        label = decodeLabel(await readMeta(entry, ref));
        if (!label) throw corrupt('damaged label');
        const streamId = progress.streamId ?? label.streamId;
        if (label.streamId !== streamId || label.sequence !== sequence || label.firstPart !== progress.parts) {
          throw corrupt(`expected tape ${sequence} of stream ${streamId} from part ${progress.parts}, found tape ${label.sequence} of stream ${label.streamId} from part ${label.firstPart}`);
        }
        progress.streamId = streamId;
        continue;
      }
      if (!m || m.streamId !== label.streamId) throw corrupt(`unexpected member ${entry.header.name}`);
      if (m.kind === 'part') {
        if (m.index !== progress.parts) throw corrupt(`part ${m.index} where part ${progress.parts} belongs`);
        for await (const chunk of entry as AsyncIterable<Buffer>) {
          progress.bytes += chunk.length;
          yield chunk;
        }
        progress.parts++;
        continue;
      }
      if (m.kind === 'label') throw corrupt('a second label');
      if (m.kind !== 'end' && m.kind !== 'continued') throw corrupt(`unexpected member ${entry.header.name}`);
      const ending = decodeClosing(await readMeta(entry, ref));
      if (!ending || ending.streamId !== label.streamId || ending.sequence !== sequence) throw corrupt(`damaged ${m.kind} member`);
      if (ending.parts !== progress.parts || ending.bytes !== progress.bytes) {
        throw corrupt(`its ${m.kind} member counts ${ending.parts} parts and ${ending.bytes} bytes, but ${progress.parts} parts and ${progress.bytes} bytes were read`);
      }
      return { ...ending, kind: m.kind };
    }
    throw corrupt('truncated: the tape file ends without its end or continued member');
  } catch (err) {
    throw asReadError(err);
  } finally {
    close();
  }
}
