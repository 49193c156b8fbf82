// From what a user types to a medium: "-" is stdout/stdin, "tape:..." a tape (see
// tape/), anything else a file.
import type { StreamSource, StreamTarget } from './medium.js';
import { NotFoundError } from '../errors.js';
import { fileSource, fileTarget } from './file/file-medium.js';
import { stdinSource, stdoutTarget } from './stdio/stdio-medium.js';

export interface TargetOptions {
  force?: boolean;
  tapeSize?: number;
  recordSize?: number;
  streamId: string;
  nextTape?: (n: number) => Promise<string | null>;
}

export function targetFor(spec: string, opts: TargetOptions): StreamTarget {
  if (spec === '-') return stdoutTarget();
  return fileTarget(spec, { force: opts.force });
}

export function sourceFor(spec: string): StreamSource {
  if (spec === '-') return stdinSource();
  return fileSource(spec);
}

/** Reopens a stream where the catalog says it is. */
export function sourceForPosition(p: import('./medium.js').MediaPosition): StreamSource {
  if (p.kind === 'file') return fileSource(p.location);
  throw new NotFoundError(`a stream on ${p.kind} ${p.location} cannot be read back from there`, 'give it with --from');
}
