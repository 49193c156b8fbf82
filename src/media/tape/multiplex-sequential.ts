// A multiplexed tape file read front to back, where seeking is impossible (a tape drive,
// a pipe): the members of the chosen stream are followed and every other member is read
// past. The choice: the stream asked for (an id), else the first whose label names the
// volume asked for, else the first stream when only one volume's streams are there (a
// second volume's label makes the choice ambiguous: refused, as on a seekable file). A
// uuid (prefix) two volumes share (a copy of a volume, a replica) names both: when the
// stream was chosen by uuid, the file is read on past its end until every volume its
// multiplex label lists has shown its label, and a second match is refused (nothing of
// a restore is kept before the stream's end is returned).
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, NotFoundError, UsageError } from '../../core/errors.js';
import { decodeClosing, decodeLabel, type TapeLabel } from './tape-format.js';
import type { StreamProgress, TapeFileEnding } from './tape-file-reader.js';

/** Which stream of a multiplexed tape file to follow. */
export interface MultiplexSelection {
  stream?: string;
  volume?: string;
  /** The reader wants every stream (verify, catalog rebuild), not one to restore: front to back, only one can be followed. */
  every?: boolean;
}

/** A tar member as the reader hands it over. */
export interface SequentialMember {
  name: { kind: string; streamId: string; index?: number };
  /** The member's data, whole (labels, closings: small). */
  meta(): Promise<Buffer>;
  /** The member's data as it is read (parts). */
  chunks(): AsyncIterable<Buffer>;
  /** Reads past the member's data. */
  skip(): Promise<void>;
}

/** The refusal of a multiplexed tape file read without --volume when it holds several volumes' dumps (`every`: by a reader of every stream, verify or catalog rebuild, which no --volume helps). */
export function ambiguousVolumes(where: string, volumes: string[], more = false, every = false): UsageError {
  const count = more ? '' : `${volumes.length} `;
  if (every) {
    return new UsageError(
      `${where} is a multiplexed tape file holding the dumps of ${count}${more ? 'several ' : ''}volumes (${volumes.join(', ')}${more ? ', …' : ''}): read front to back (a pipe, a drive), only one of its streams can be followed, and every one is to be read`,
      'copy it into a tape directory first (dd if=/dev/nst0 of=DIR/file0001.tar bs=10k, or from a pipe: cat > DIR/file0001.tar) and give tape:DIR, whose file is read by seeking',
    );
  }
  return new UsageError(`${where} is a multiplexed tape file holding the dumps of ${count}${more ? 'several ' : ''}volumes (${volumes.join(', ')}${more ? ', …' : ''}): which one to restore is ambiguous`, 'pick one with --volume PATH|UUID');
}

/** Does `selector` (the volume's path as dumped, or its uuid or a prefix of 4+ characters, any case) name the volume of this label? */
function matchesVolume(label: TapeLabel, selector: string): boolean {
  const v = label.volume;
  if (!v) return false;
  return byPath(v.path, selector) || (selector.length >= 4 && v.uuid.startsWith(selector.toLowerCase()));
}

/** Does `selector` name the volume dumped as `dumped` by its path: as given, or where links lead (dumped through a link, named by its real path, or the other way)? */
export function byPath(dumped: string, selector: string): boolean {
  if (dumped === selector || path.resolve(dumped) === path.resolve(selector)) return true;
  const real = (p: string): string | null => {
    try {
      return fs.realpathSync(p);
    } catch {
      return null; // gone, or the link removed: only the path as dumped names it
    }
  };
  const r = real(selector);
  return r !== null && r === real(dumped);
}

/**
 * Yields the part bytes of the chosen stream from the members after the multiplex label;
 * returns its ending (end, or continued on the next tape). `listed`: the volumes the
 * multiplex label lists (absent in tape files of older versions).
 */
export async function* followStream(members: AsyncIterable<SequentialMember>, where: string, select: MultiplexSelection, progress: StreamProgress, listed?: string[]): AsyncGenerator<Buffer, TapeFileEnding> {
  const corrupt = (what: string) => new CorruptError(`${where}: ${what}`, '`tar tvf` on the tape file shows how far it can be read');
  let chosen: string | null = select.stream ?? progress.streamId;
  let chosenVolume: string | null = null;
  const labelled = new Set<string>();
  // the chosen stream's ending, once read while the other volumes' labels are still awaited
  let ending: TapeFileEnding | null = null;
  const unseen = () => (listed ?? []).filter((p) => !labelled.has(p)).length;
  for await (const m of members) {
    const id = m.name.streamId;
    if (m.name.kind === 'label') {
      const label = decodeLabel(await m.meta());
      if (!label || label.streamId !== id) throw corrupt('damaged label');
      if (label.volume) labelled.add(label.volume.path);
      if (chosen === null) {
        const take = select.volume !== undefined ? matchesVolume(label, select.volume) : true;
        if (take) {
          chosen = id;
          chosenVolume = label.volume?.path ?? null;
        }
      } else if (id !== chosen && select.volume !== undefined && label.volume && chosenVolume !== null && label.volume.path !== chosenVolume && matchesVolume(label, select.volume)) {
        throw new UsageError(`${where}: --volume ${select.volume} matches the dumps of 2 volumes: ${chosenVolume}, ${label.volume.path}: which one to restore is ambiguous`, 'pick one by its path as dumped: --volume PATH');
      } else if (id !== chosen && select.volume === undefined && select.stream === undefined && progress.streamId === null && label.volume && chosenVolume !== null && label.volume.path !== chosenVolume) {
        throw ambiguousVolumes(where, [chosenVolume, label.volume.path], true, select.every);
      }
      if (ending && unseen() === 0) return ending;
      if (id === chosen && label.firstPart !== progress.parts) throw corrupt(`stream ${id} goes on from part ${label.firstPart} here, where part ${progress.parts} belongs`);
      continue;
    }
    if (id !== chosen || ending) {
      await m.skip();
      continue;
    }
    if (m.name.kind === 'part') {
      if (m.name.index !== progress.parts) throw corrupt(`part ${m.name.index} of stream ${id} where part ${progress.parts} belongs`);
      for await (const chunk of m.chunks()) {
        progress.bytes += chunk.length;
        yield chunk;
      }
      progress.parts++;
      continue;
    }
    if (m.name.kind === 'aborted') throw corrupt(`stream ${id} was given up by its dump (aborted member)`);
    if (m.name.kind !== 'end' && m.name.kind !== 'continued') {
      await m.skip();
      continue;
    }
    const closing = decodeClosing(await m.meta());
    if (!closing || closing.streamId !== id) throw corrupt(`damaged ${m.name.kind} member`);
    if (closing.parts !== progress.parts || closing.bytes !== progress.bytes) {
      throw corrupt(`its ${m.name.kind} member counts ${closing.parts} parts and ${closing.bytes} bytes, but ${progress.parts} parts and ${progress.bytes} bytes were read`);
    }
    progress.streamId = id;
    ending = { ...closing, kind: m.name.kind };
    // chosen by its path, or every volume's label read: no other stream can match
    if (select.volume === undefined || chosenVolume === null || byPath(chosenVolume, select.volume) || unseen() === 0) return ending;
  }
  if (ending) return ending; // the file's end: every label there is was read
  if (chosen === null) throw new NotFoundError(`${where}: no stream of ${select.volume ?? 'the volume asked for'} in this multiplexed tape file`, 'list its streams with: imgstream tape log (on a copy in a tape directory)');
  throw corrupt(`truncated: stream ${chosen} has no end or continued member`);
}
