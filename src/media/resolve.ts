// From what a user types to a medium: "-" is stdout/stdin, "tape:..." a tape (see
// tape/), anything else a file.
import type { StreamSource, StreamTarget } from './medium.js';
import { InvalidInputError, NotFoundError } from '../errors.js';
import { fileSource, fileTarget } from './file/file-medium.js';
import { stdinSource, stdoutTarget } from './stdio/stdio-medium.js';
import { parseTapeSpec, tapeSource, tapeTarget } from './tape/index.js';

export interface TargetOptions {
  force?: boolean;
  tapeSize?: number;
  recordSize?: number;
  streamId: string;
  nextTape?: (n: number) => Promise<string | null>;
}

export function targetFor(spec: string, opts: TargetOptions): StreamTarget {
  if (spec === '-') return stdoutTarget();
  if (spec.startsWith('tape:')) {
    const t = parseTapeSpec(spec);
    if (t.file !== undefined) throw new InvalidInputError(`${spec}: a dump goes to the next tape file; #N is for reading`, 'give tape:DIR');
    return tapeTarget({ tapes: t.tapes, tapeSize: opts.tapeSize, recordSize: opts.recordSize, streamId: opts.streamId, nextTape: opts.nextTape });
  }
  return fileTarget(spec, { force: opts.force });
}

export function sourceFor(spec: string): StreamSource {
  if (spec === '-') return stdinSource();
  if (spec.startsWith('tape:')) return tapeSource(parseTapeSpec(spec));
  return fileSource(spec);
}

/** Reopens a stream where the catalog says it is. */
export function sourceForPosition(p: import('./medium.js').MediaPosition): StreamSource {
  if (p.kind === 'file') return fileSource(p.location);
  if (p.kind === 'tape' && p.tapeFile !== undefined) return tapeSource({ tapes: p.tapes?.length ? p.tapes : [p.location], file: p.tapeFile });
  throw new NotFoundError(`a stream on ${p.kind} ${p.location} cannot be read back from there`, 'give it with --from');
}
