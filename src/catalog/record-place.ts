// Where a catalog record says its stream is, as people read it (catalog list, show and
// rebuild), saying when restore --as-of cannot read it back from there. Most places can:
// a file, a tape directory's tape file, a peer, an S3 object. A stream read from a pipe
// (catalog rebuild --from - or --from tape:/dev/stdin, tape files piped in) has no place
// to be read back from: it is recorded as kind "stdin" (a dump to one, --to -, as "stdout"), so that its dump still counts
// (later levels build on it), and restore names the medium to give instead. A tape
// drive's stream has no tape file number (the drive reads where it is positioned).
import type { MediaPosition } from '../media/medium.js';
import { placeSuffix } from '../media/s3/s3-place.js';

/** A path that names this process's standard input or another of its descriptors: a pipe then, never a place. */
export function isDescriptorPath(p: string): boolean {
  return /^\/dev\/(?:std(?:in|out|err)|fd\/\d+)$|^\/proc\/(?:self|thread-self|\d+)\/fd\/\d+$/.test(p);
}

/** True when the record's stream went through a pipe: nothing can be read back from where it says. */
export function isPipePlace(p: MediaPosition): boolean {
  return p.kind === 'stdin' || p.kind === 'stdout' || (p.kind === 'tape' && p.tapeFile === undefined && isDescriptorPath(p.location));
}

/** The place, one line: "tape /tapes/t1 file 2", "file /b/vm.l0", "a pipe (stdin): not readable back". */
export function describePlace(p: MediaPosition): string {
  if (p.kind === 'stdin') return `a pipe (${p.location === '-' ? 'stdin' : p.location}): not readable back`;
  if (p.kind === 'stdout') return 'a pipe (stdout): not readable back';
  if (p.kind === 'tape' && p.tapeFile === undefined) return isDescriptorPath(p.location) ? `a pipe (tape ${p.location}): not readable back` : `tape ${p.location} (a drive: no tape file number)`;
  if (p.kind === 'tape') return `tape ${p.location} file ${p.tapeFile}`;
  return `${p.kind} ${p.location}${placeSuffix(p)}`;
}
