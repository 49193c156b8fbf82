// The streams of a multiplexed tape file, as a tape source yields them: one SourceStream
// per stream (or only the one asked for: a catalog position's stream, a volume), each
// read by seeking to its own members (multiplex-reader.ts), followed from tape to tape.
import path from 'node:path';
import { CorruptError, NotFoundError, UsageError } from '../../core/errors.js';
import type { MediaPosition, SourceStream } from '../medium.js';
import { type TapeKind, listTapeFiles } from './tape-directory.js';
import type { StreamProgress, TapeFileRef } from './tape-file-reader.js';
import { ambiguousVolumes, byPath } from './multiplex-sequential.js';
import { type MultiplexIndex, type MultiplexStreamInfo, type ReadCounter, indexMultiplexFile, readMultiplexedParts, streamStartsHere } from './multiplex-reader.js';

export interface MultiplexedStreamsOptions {
  tapes: string[];
  /** The tape holding the multiplexed file, and the file. */
  t: number;
  ref: TapeFileRef;
  tapeFile: number | undefined;
  kinds: TapeKind[];
  stream?: string;
  volume?: string;
  oneVolume?: boolean;
}

/** Does `selector` (a volume's path as dumped, or its uuid or a prefix of 4+ characters) name this stream's volume? */
export function volumeMatches(info: MultiplexStreamInfo, selector: string): boolean {
  const v = info.volume;
  if (!v) return false;
  return byPath(v.path, selector) || (selector.length >= 4 && v.uuid !== null && v.uuid.startsWith(selector.toLowerCase()));
}

function describeVolume(info: MultiplexStreamInfo): string {
  return info.volume ? `${info.volume.path}${info.volume.uuid ? ` [${info.volume.uuid.slice(0, 8)}]` : ''}` : `stream ${info.streamId}`;
}

export async function multiplexedStreams(o: MultiplexedStreamsOptions): Promise<SourceStream[]> {
  const counter: ReadCounter = { bytes: 0 };
  const index = indexMultiplexFile(o.ref, counter);
  let streams = index.streams;
  if (index.label.sequence > 1) {
    // a tape after the first: the streams that begin here (the others are read from their first tape)
    const starting: MultiplexStreamInfo[] = [];
    for (const s of streams) if (await streamStartsHere(o.ref, index, s.streamId, counter)) starting.push(s);
    streams = starting;
  }
  const lost = lostVolumes(index);
  if (o.stream !== undefined) {
    streams = streams.filter((s) => s.streamId === o.stream);
    if (streams.length === 0) throw new NotFoundError(`${o.ref.name}: no stream ${o.stream} in this multiplexed tape file`, index.damage ? `the tape file is damaged: ${index.damage}` : 'the catalog may be out of date: imgstream catalog rebuild');
  }
  if (o.volume !== undefined) {
    streams = streams.filter((s) => volumeMatches(s, o.volume!));
    const gone = lost.find((p) => volumeMatches({ streamId: '', volume: { path: p, uuid: null } }, o.volume!));
    if (streams.length === 0 && gone !== undefined) throw lostStream(o.ref, index, gone);
    // a uuid (prefix) two volumes share (a copy, a restored replica and its source): only the path tells them apart
    const paths = [...new Set(streams.map((s) => s.volume?.path ?? s.streamId))];
    if (paths.length > 1) {
      throw new UsageError(`${o.ref.name}: --volume ${o.volume} matches the dumps of ${paths.length} volumes: ${paths.join(', ')}: which one to restore is ambiguous`, 'pick one by its path as dumped, as imgstream tape log tape:DIR#N lists them: --volume PATH');
    }
  } else if (o.oneVolume && o.stream === undefined) {
    const volumes = [...new Set([...streams.map(describeVolume), ...lost])];
    if (volumes.length > 1) {
      throw ambiguousVolumes(o.ref.name, volumes);
    }
  }
  const location = path.resolve(o.tapes[o.t]);
  const found: SourceStream[] = streams.map((s) => {
    const position: MediaPosition = { kind: 'tape', location, ...(o.tapeFile !== undefined ? { tapeFile: o.tapeFile } : {}), tapes: [location], stream: s.streamId };
    // a getter: a log found wrong while a stream is read is damage found then (multiplex-reader.ts walks the headers instead)
    return {
      name: `${o.ref.name} (${describeVolume(s)})`,
      position,
      bytes: streamBytes(o, index, s.streamId, position, counter),
      bytesRead: () => counter.bytes,
      get mediumDamage() {
        return index.damage ? `${o.ref.name}: ${index.damage}` : undefined;
      },
    };
  });
  // every stream is read (verify, catalog rebuild): a volume the file lost is one that fails, named
  if (o.stream !== undefined || o.volume !== undefined) return found;
  // one its dump gave up (stopped by a signal, failed) is said as such, not as damage
  for (const [k, s] of streams.entries()) {
    const given = givenUp(index, s.streamId);
    if (given !== null) found[k] = { ...found[k], givenUp: given };
  }
  const missing: SourceStream[] = lost.map((p) => ({
    name: `${o.ref.name} (${p})`,
    position: { kind: 'tape', location, ...(o.tapeFile !== undefined ? { tapeFile: o.tapeFile } : {}), tapes: [location] },
    bytes: (async function* (): AsyncGenerator<Buffer> {
      throw lostStream(o.ref, index, p);
    })(),
    lost: true,
    mediumDamage: `${o.ref.name}: ${index.damage}`,
  }));
  return [...found, ...missing];
}

/** Why a stream with an aborted member in this tape file is no stream (null: it has none). */
function givenUp(index: MultiplexIndex, streamId: string): string | null {
  const mine = index.members.filter((m) => m.streamId === streamId);
  if (!mine.some((m) => m.kind === 'aborted')) return null;
  const parts = mine.filter((m) => m.kind === 'part').length;
  const error = index.log?.header.sources.find((x) => x.streamId === streamId)?.error;
  return `given up by its dump after ${parts} part${parts === 1 ? '' : 's'} here (an aborted member${error ? `: ${error}` : ''}): no stream, not verified`;
}

/**
 * The volumes the multiplex label lists whose streams a cut tape file lost: none of their
 * members is before the damage. (A file read to the end of its archive lost none: a
 * volume listed and absent failed before it wrote, or is on another tape, as its log says.)
 */
function lostVolumes(index: MultiplexIndex): string[] {
  if (!index.cut || index.label.sequence !== 1) return [];
  const here = new Set(index.streams.map((s) => (s.volume ? path.resolve(s.volume.path) : s.streamId)));
  return [...new Set(index.label.volumes ?? [])].filter((p) => !here.has(path.resolve(p)));
}

function lostStream(ref: TapeFileRef, index: MultiplexIndex, volume: string): CorruptError {
  return new CorruptError(`${ref.name}: no stream of ${volume} is left in this tape file, whose multiplex member lists it: it is damaged (${index.damage})`, '`tar tvf` on the tape file shows how far it can be read; restore that volume from another dump');
}

/** A stream's bytes from its multiplexed tape files: this one, then the first tape file of each next tape while it continues. */
async function* streamBytes(o: MultiplexedStreamsOptions, first: MultiplexIndex, streamId: string, position: MediaPosition, counter: ReadCounter): AsyncGenerator<Buffer> {
  const progress: StreamProgress = { parts: 0, bytes: 0, streamId };
  let ref = o.ref;
  let index = first;
  for (let rel = 1; ; rel++) {
    const ending = yield* readMultiplexedParts(ref, index, streamId, progress, counter);
    if (ending.kind === 'end') return;
    const sequence = first.label.sequence + rel; // of the multiplexed dump's tapes
    const k = o.t + rel;
    if (k >= o.tapes.length || o.kinds[k] !== 'directory') {
      throw new NotFoundError(`${o.ref.name}: stream ${streamId} continues on a next tape (tape ${sequence} of the multiplexed dump), which was not given`, 'give every tape of the set in order: tape:DIR1,DIR2,...');
    }
    const next = listTapeFiles(o.tapes[k])[0];
    if (!next) throw new NotFoundError(`tape ${o.tapes[k]} is empty: expected tape ${sequence} of multiplexed dump ${first.label.id}`, 'give the tapes of the set in order: tape:DIR1,DIR2,...');
    ref = { name: `tape ${o.tapes[k]} file ${next.number}`, path: next.path };
    index = indexMultiplexFile(ref, counter);
    if (index.label.id !== first.label.id || index.label.sequence !== sequence) {
      throw new CorruptError(`${ref.name}: expected tape ${sequence} of multiplexed dump ${first.label.id}, found tape ${index.label.sequence} of ${index.label.id}`, 'give the tapes of the set in order: tape:DIR1,DIR2,...');
    }
    position.tapes!.push(path.resolve(o.tapes[k]));
  }
}
