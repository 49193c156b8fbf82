// Reads one tape file (tape-archive.ts): its label, then its parts as they arrive
// (never a whole part in memory), then its continued or end member. Damage of any kind
// (a bad header checksum, a truncated archive, members out of order) is a CorruptError
// naming the tape file; a failing read is the operating system's error.
import { CorruptError, InvalidInputError } from '../../core/errors.js';
import {
  MAX_META_BYTES,
  MAX_RECORD_SIZE,
  type TapeClosing,
  type TapeLabel,
  decodeClosing,
  decodeLabel,
  parseMemberName,
} from './tape-format.js';
import { decodeMultiplexLabel, type MultiplexLabel } from './multiplex-format.js';
import { DAMAGE_HINT, type TapeArchive, type TapeFileRef, type TarEntry, openTapeArchive } from './tape-archive.js';
export type { TapeFileRef } from './tape-archive.js';
import { ambiguousVolumes, followStream, type MultiplexSelection, type SequentialMember } from './multiplex-sequential.js';

/** Where the reading of a stream stands, carried from one tape file to the next. */
export interface StreamProgress {
  parts: number;
  bytes: number;
  /** The stream's id, once a label said it. */
  streamId: string | null;
}

export type TapeFileEnding = TapeClosing & { kind: 'continued' | 'end' };

/** The members after the first, as followStream reads them. */
async function* sequentialMembers(extract: AsyncIterable<TarEntry>, ref: TapeFileRef, log: { id: string; read: boolean }): AsyncGenerator<SequentialMember> {
  for await (const entry of extract) {
    const name = parseMemberName(entry.header.name);
    if (!name) throw new CorruptError(`${ref.name}: unexpected member ${entry.header.name}`, DAMAGE_HINT);
    if (name.kind === 'log' && name.streamId === log.id) {
      // the tape file's last member: what follows is the next tape file's
      for await (const c of entry) void c;
      log.read = true;
      return;
    }
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
    throw ambiguousVolumes(where, volumes, false, select.every);
  }
}

/** The label of a tape file (its first member). */
export async function readTapeLabel(ref: TapeFileRef): Promise<TapeFileLabel> {
  const archive = openTapeArchive(ref, 64 << 10);
  try {
    for await (const entry of archive.entries) {
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
    throw archive.asReadError(err);
  } finally {
    archive.close();
  }
}

/**
 * Yields the part bytes of tape `sequence` of the stream from one tape file and returns
 * its ending. `progress` counts parts and bytes across the stream's tape files and holds
 * the stream's id (null before its first tape file is read: the label then says it).
 * `readOn`: a drive or pipe already open, read on from the tape file at its position and
 * left open past this one's end (a multiplexed one's other members and backup log read
 * past), for the next tape file; without it `ref` is opened, and closed at the end.
 */
export async function* readTapeFileParts(ref: TapeFileRef, sequence: number, progress: StreamProgress, select?: MultiplexSelection, readOn?: TapeArchive): AsyncGenerator<Buffer, TapeFileEnding> {
  const archive = readOn ?? openTapeArchive(ref, MAX_RECORD_SIZE);
  const corrupt = (what: string) => new CorruptError(`${ref.name}: ${what}`, DAMAGE_HINT);
  // one iterator, so a multiplexed file's members can be handed on from inside the loop
  const entries = archive.entries;
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
          const log = { id: mux.id, read: false };
          const ending = yield* followStream(sequentialMembers(entries, ref, log), ref.name, select, progress, mux.volumes);
          if (readOn && !log.read) await readOn.skipPast('log', mux.id);
          return ending;
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
    throw archive.asReadError(err, ref.name);
  } finally {
    if (!readOn) archive.close();
  }
}
