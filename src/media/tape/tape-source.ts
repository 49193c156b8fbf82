// Reads the dumps of a tape set back: each stream's bytes are its part members, read
// lazily and followed from tape to tape. A multiplexed tape file yields each of its
// streams (multiplex-source.ts), read by seeking to its own members.
import path from 'node:path';
import { InvalidInputError, NotFoundError } from '../../core/errors.js';
import type { MediaPosition, SourceStream, StreamSource } from '../medium.js';
import { type TapeKind, checkTapeReadable, listTapeFiles, tapeKind } from './tape-directory.js';
import { type StreamProgress, type TapeFileRef, readTapeFileParts, readTapeLabel } from './tape-file-reader.js';
import { type TapeArchive, openTapeArchive } from './tape-archive.js';
import { MAX_RECORD_SIZE } from './tape-format.js';
import { checkTapeOrder, refuseMissingContinuation } from './tape-order.js';
import { multiplexedStreams } from './multiplex-source.js';

export interface TapeSourceOptions {
  /** The tape set in order: directories or tape devices. */
  tapes: string[];
  /** Only the stream that starts in this tape file (1-based) of the first tape. */
  file?: number;
  /** Multiplexed tape files: only this stream (an id, as the catalog records it). */
  stream?: string;
  /** Multiplexed tape files: only the streams of this volume (its path as dumped, or its uuid or a prefix of it). */
  volume?: string;
  /** Multiplexed tape files holding several volumes' streams are refused unless `volume` picks one (restore). */
  oneVolume?: boolean;
  /**
   * Tape files missing from a tape do not stop the read (catalog rebuild: the dumps whole
   * on the set are still recorded): the order of the set is then not checked as a whole
   * (each stream's tapes are, by their labels, as read), a stream going on on a tape whose
   * first file is gone ends naming it, and missing() names every one.
   */
  acrossGaps?: boolean;
}

/**
 * The streams of a tape set, in order.
 *
 * Directory tapes: the complete tape files of each tape in number order (partial files of
 * dumps in progress or killed are not tape files). A tape file that continues a stream
 * from an earlier tape is read as part of that stream, never on its own: a stream ending
 * in a continued member goes on in the first tape file of the next tape given, which must
 * be the same stream's next tape.
 *
 * Tape devices: a device first in `tapes` yields the streams from the tape's current
 * position (position it with `mt fsf` first; `file` is refused): a drive's one tape file
 * there, every tape file of a pipe (deviceStreams); a device later in the list only serves
 * as the continuation of a stream, read from its current position. The stream's position
 * then names the device and no tape file number.
 *
 * A damaged or truncated tape file ends the stream with a CorruptError naming it.
 *
 * Before reading, every tape is checked (devices opened, directories listed) and a set
 * of directories is checked for order; precheck() (restore, verify) also refuses a set
 * whose last tape ends in the middle of a dump it would read. A set ending on a device
 * cannot be checked that way: a drive is read only once, as the stream reaches it.
 */
export function tapeSource(opts: TapeSourceOptions): StreamSource {
  if (opts.tapes.length === 0 || opts.tapes.some((t) => t === '')) throw new InvalidInputError('no tape given', 'give at least one tape: tape:DIR');
  const only = opts.file;
  if (only !== undefined && (!Number.isSafeInteger(only) || only < 1)) throw new InvalidInputError(`tape file number ${only} is not a positive integer`, 'tape files are numbered from 1: tape:DIR#N');
  const tapes = opts.tapes;

  function refOf(t: number, kinds: TapeKind[]): TapeFileRef | null {
    if (kinds[t] === 'device') return { name: `tape ${tapes[t]}`, path: tapes[t] };
    const first = listTapeFiles(tapes[t])[0];
    return first ? { name: `tape ${tapes[t]} file ${first.number}`, path: first.path } : null;
  }

  /** The tapes a stream starting on tape t spans, as far as the next tapes' first labels tell. */
  async function spannedTapes(t: number, streamId: string, kinds: TapeKind[]): Promise<string[]> {
    const spanned = [path.resolve(tapes[t])];
    for (let k = t + 1; k < tapes.length && kinds[k] === 'directory'; k++) {
      const ref = refOf(k, kinds);
      const label = ref ? await readTapeLabel(ref).catch(() => null) : null;
      if (!label || label.streamId !== streamId || label.sequence !== k - t + 1) break;
      spanned.push(path.resolve(tapes[k]));
    }
    return spanned;
  }

  /**
   * The bytes of the stream starting in `first` on tape t (its id null when read from a
   * device: the label says it); `readOn`: the device it starts on, already open. Returns
   * true when the stream went on on the next tape (the first one was then closed).
   */
  async function* streamBytes(t: number, first: TapeFileRef, streamId: string | null, kinds: TapeKind[], readOn?: TapeArchive): AsyncGenerator<Buffer, boolean> {
    const progress: StreamProgress = { parts: 0, bytes: 0, streamId };
    let ref = first;
    for (let sequence = 1; ; sequence++) {
      // a device may hold a multiplexed tape file: read past the other streams to the one asked for
      const select = kinds[t + sequence - 1] === 'device' ? { stream: opts.stream, volume: opts.volume, every: opts.oneVolume !== true } : undefined;
      const ending = yield* readTapeFileParts(ref, sequence, progress, select, sequence === 1 ? readOn : undefined);
      if (ending.kind === 'end') return sequence > 1;
      if (sequence === 1) readOn?.close(); // the next tape may be the same drive, its tape changed
      const k = t + sequence;
      if (k >= tapes.length) {
        throw new NotFoundError(`${ref.name}: the stream continues on a next tape (tape ${sequence + 1} of the dump${sequence > 1 ? `, which began on ${first.name}` : ''}), which was not given`, 'give every tape of the set in order: tape:DIR1,DIR2,...');
      }
      // the part that goes on is the next tape's first file: when that one is gone, say so (not another file taken for it)
      if (kinds[k] === 'directory' && (listTapeFiles(tapes[k])[0]?.number ?? 1) > 1) throw missingOf(k, kinds)!;
      const next = refOf(k, kinds);
      if (!next) throw new NotFoundError(`tape ${tapes[k]} is empty: expected tape ${sequence + 1} of stream ${progress.streamId} (continued from ${first.name})`, 'give the tapes of the set in order: tape:DIR1,DIR2,...');
      ref = next;
    }
  }

  async function startingStreams(t: number, ref: TapeFileRef, tapeFile: number | undefined, kinds: TapeKind[]): Promise<SourceStream[] | null> {
    let streamId: string | null = null; // a device cannot be read twice: its label is checked with the stream
    let spanned = [path.resolve(tapes[t])];
    if (kinds[t] === 'directory') {
      const label = await readTapeLabel(ref);
      if (label.multiplex) {
        const found = await multiplexedStreams({ tapes, t, ref, tapeFile, kinds, stream: opts.stream, volume: opts.volume, oneVolume: opts.oneVolume });
        if (label.sequence !== 1 && found.length === 0) {
          // a later tape of a multiplexed dump on which no stream begins: read with the streams it continues
          if (only === undefined) return null;
          throw new InvalidInputError(`${ref.name} continues multiplexed dump ${label.streamId} from an earlier tape (it is its tape ${label.sequence})`, 'give the tapes from the first one of that dump: tape:DIR1#N,DIR2,...');
        }
        return found;
      }
      if (label.sequence !== 1) {
        if (only === undefined) return null; // read with the stream it continues
        throw new InvalidInputError(
          `${ref.name} continues stream ${label.streamId} from an earlier tape (it is tape ${label.sequence} of that dump)`,
          'give the tapes from the first one of that dump: tape:DIR1#N,DIR2,...',
        );
      }
      streamId = label.streamId;
      spanned = await spannedTapes(t, streamId, kinds);
    }
    const position: MediaPosition = { kind: 'tape', location: path.resolve(tapes[t]), ...(tapeFile !== undefined ? { tapeFile } : {}), tapes: spanned };
    // a plain dump's label names no volume (nor does a device's, read as the stream is): the stream header tells whose it is
    const unchecked = opts.volume !== undefined ? { volumeUnchecked: opts.volume } : {};
    return [{ name: ref.name, position, bytes: streamBytes(t, ref, streamId, kinds), ...unchecked }];
  }

  /**
   * The streams of the drive or pipe first in the set, from its position on, one per tape
   * file: a drive's read ends at the filemark after the first (read the drive again for
   * the next); tape files sent back to back down a pipe are all read, to the end of the
   * input, never leaving one unread. A stream the consumer left before its end is read
   * past (to reach the next); a stream that fails or goes on on the next tape ends them.
   */
  async function* deviceStreams(kinds: TapeKind[]): AsyncGenerator<SourceStream> {
    const device = tapes[0];
    const readOn = openTapeArchive({ name: `tape ${device}`, path: device }, MAX_RECORD_SIZE);
    const location = path.resolve(device);
    // a plain dump's label names no volume (nor does a device's, read as the stream is): the stream header tells whose it is
    const unchecked = opts.volume !== undefined ? { volumeUnchecked: opts.volume } : {};
    try {
      for (let n = 1; ; n++) {
        const ref = { name: n === 1 ? `tape ${device}` : `tape ${device} (tape file ${n} read)`, path: device };
        const state = { ended: false, failed: false, continued: false };
        const tracked = (async function* (): AsyncGenerator<Buffer> {
          try {
            state.continued = yield* streamBytes(0, ref, null, kinds, readOn);
            state.ended = true;
          } catch (err) {
            state.failed = true;
            throw err;
          }
        })();
        // leaving the bytes early (restore passing over another volume's dump) leaves them to be read past
        const bytes: AsyncIterable<Buffer> = { [Symbol.asyncIterator]: () => ({ next: () => tracked.next(), return: async () => ({ done: true, value: undefined }) }) };
        yield { name: ref.name, position: { kind: 'tape', location, tapes: [location] }, bytes, ...unchecked };
        if (!state.ended && !state.failed) for await (const chunk of tracked) void chunk;
        if (state.failed || state.continued) return; // the reader named the damage; a full tape holds no more
        let next: boolean;
        try {
          next = await readOn.more();
        } catch (err) {
          throw readOn.asReadError(err, `tape ${device} (after tape file ${n})`);
        }
        if (!next) return;
      }
    } finally {
      readOn.close();
    }
  }

  /** Every tape exists and can be read. */
  let readable: TapeKind[] | null = null;
  function readableKinds(): TapeKind[] {
    if (readable) return readable;
    const kinds = tapes.map((t) => tapeKind(t, false, true));
    tapes.forEach((t, i) => checkTapeReadable(t, kinds[i]));
    readable = kinds;
    return kinds;
  }

  /** The tape files missing from tape t (a directory), from 1 to its last: its error, or null when none is. */
  function missingOf(t: number, kinds: TapeKind[]): NotFoundError | null {
    if (kinds[t] !== 'directory') return null;
    const numbers = listTapeFiles(tapes[t]).map((f) => f.number);
    const missing = numbers.length ? Array.from({ length: numbers[numbers.length - 1] }, (_, k) => k + 1).filter((n) => !numbers.includes(n)) : [];
    if (missing.length === 0) return null;
    return new NotFoundError(
      `tape ${tapes[t]}: tape file${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ${missing.length > 1 ? 'are' : 'is'} missing (it holds ${numbers.length} of files 1 to ${numbers[numbers.length - 1]})`,
      `put ${missing.length > 1 ? 'them' : 'it'} back, or read the files there one by one: tape:${tapes[t]}#N`,
    );
  }

  /** With acrossGaps: the tapes' missing files, once the set was looked at. */
  let gaps: Array<NotFoundError | null> = [];

  /** Every tape exists and can be read; a set of directories is in order (once: precheck() or the first read). */
  let checked: TapeKind[] | null = null;
  async function checkSet(): Promise<TapeKind[]> {
    if (checked) return checked;
    const kinds = readableKinds();
    if (opts.acrossGaps && only === undefined) gaps = tapes.map((_, t) => missingOf(t, kinds));
    // a set with a tape file gone reads the order off each stream's labels: the first file of a tape may be the one gone
    if (kinds[0] === 'directory' && !gaps.some((g) => g !== null)) await checkTapeOrder(tapes, kinds);
    checked = kinds;
    return kinds;
  }

  return {
    description: `tape ${tapes.join(',')}`,
    missing: () => gaps.filter((g): g is NotFoundError => g !== null),
    async precheck(): Promise<void> {
      // a tape file gone from a tape is named before the order of the set is checked: its
      // first file missing, the order check would take the tape for another set's (exit 4)
      const kinds = readableKinds();
      // every dump of a tape directory is read: one whose file is gone from the middle is named, not met as a broken chain
      if (only === undefined) {
        tapes.forEach((_, i) => {
          const missing = missingOf(i, kinds);
          if (missing) throw missing;
        });
      }
      await checkSet();
      if (kinds[0] === 'directory') await refuseMissingContinuation(tapes, kinds, { file: only, stream: opts.stream, volume: opts.volume });
    },
    async *streams(): AsyncGenerator<SourceStream> {
      const kinds = await checkSet();
      if (kinds[0] === 'device') {
        if (only !== undefined) throw new InvalidInputError(`tape ${tapes[0]} is a device: imgstream cannot pick tape file ${only} on it`, `position the tape first (mt -f ${tapes[0]} fsf N) and read tape:${tapes[0]}`);
        yield* deviceStreams(kinds);
        return;
      }
      const skipped: string[] = [];
      let yielded = 0;
      for (let t = 0; t < tapes.length; t++) {
        if (kinds[t] !== 'directory') continue; // later devices only continue streams
        const files = listTapeFiles(tapes[t]);
        let chosen = files;
        if (only !== undefined) {
          chosen = files.filter((f) => f.number === only);
          if (chosen.length === 0) {
            const held = files.length ? `it holds tape files ${files[0].number} to ${files[files.length - 1].number}` : 'it holds no tape file';
            throw new NotFoundError(`tape ${tapes[0]} has no tape file ${only}`, held);
          }
        }
        for (const f of chosen) {
          const found = await startingStreams(t, { name: `tape ${tapes[t]} file ${f.number}`, path: f.path }, f.number, kinds);
          for (const s of found ?? []) {
            yielded++;
            yield s;
          }
          if (found === null && t === 0) skipped.push(`tape ${tapes[t]} file ${f.number}`);
        }
        if (only !== undefined) break;
      }
      if (yielded === 0 && opts.volume !== undefined && skipped.length === 0) {
        throw new NotFoundError(`no dump of volume ${opts.volume} in tape ${tapes.join(',')}${only !== undefined ? ` file ${only}` : ''}`, 'give the volume\'s path as dumped, or its uuid (a prefix of 4 or more digits): imgstream tape log tape:DIR#N lists them');
      }
      // nothing but the continuation of a dump whose first tape was not given: say so
      if (yielded === 0 && skipped.length > 0) {
        const label = await readTapeLabel({ name: skipped[0], path: listTapeFiles(tapes[0])[0].path });
        throw new NotFoundError(`${skipped[0]} continues dump ${label.streamId} (it is its tape ${label.sequence}), whose tape 1 was not given`, 'give the tapes of the dump from its first one, in order: tape:DIR1,DIR2,...');
      }
    },
  };
}
