// From what a user types to a medium: "-" is stdout/stdin, "tape:..." a tape (see
// tape/), "peer://HOST:PORT/NAME" a stream on a peer daemon (see peer/; needs the
// client options: token file, TLS), "s3://BUCKET/KEY" an object (see s3/; endpoint and
// addressing from the s3 options), anything else a file (one that reads like another
// URL, peer:/x or http://…, is refused as a typo: url-like.ts).
import { refuseUnknownUrl } from './url-like.js';
import type { MediaPosition, StreamSource, StreamTarget } from './medium.js';
import { InvalidInputError, NotFoundError, UsageError } from '../core/errors.js';
import { fileSource, fileTarget } from './file/file-medium.js';
import { stdinSource, stdoutTarget } from './stdio/stdio-medium.js';
import { parseTapeSpec, tapeSource, tapeTarget } from './tape/index.js';
import { peerSource, peerTarget } from './peer/peer-medium.js';
import type { PeerClientOptions } from '../peer/index.js';
import { isS3Spec, optionsForRecorded, s3Source, s3Target, type S3Options } from './s3/index.js';

export interface TargetOptions {
  force?: boolean;
  tapeSize?: number;
  /** Tapes: create missing tape directories. */
  newTape?: boolean;
  recordSize?: number;
  streamId: string;
  nextTape?: (n: number) => Promise<string | null>;
  /** Tapes: told one line for each tape file of a killed dump removed from the tapes. */
  notice?: (line: string) => void;
  /** How to reach peer:// targets (token file, TLS checks, rate limit). */
  peer?: PeerClientOptions;
  /** How to reach s3:// targets (endpoint, path-style). */
  s3?: S3Options;
}

export interface SourceOptions {
  /** Multiplexed tape files: only the streams of this volume (path as dumped, uuid or prefix). */
  volume?: string;
  /** Multiplexed tape files: refuse one holding several volumes unless `volume` picks one. */
  oneVolume?: boolean;
  /** Tape sets: read past tape files missing from a tape (catalog rebuild), which the source's missing() names. */
  acrossGaps?: boolean;
  /** How to reach peer:// sources. */
  peer?: PeerClientOptions;
  /** How to reach s3:// sources. */
  s3?: S3Options;
}

export const PEER_SCHEME = 'peer://';
const MEDIA_FORMS = 'a file, -, tape:DIR, peer://HOST:PORT/NAME or s3://BUCKET/KEY';

export function isPeerSpec(spec: string): boolean {
  return spec.startsWith(PEER_SCHEME);
}

function peerOptions(spec: string, opts: { peer?: PeerClientOptions }): PeerClientOptions {
  if (!opts.peer) throw new UsageError(`${spec} needs --token-file FILE`, 'the same token file the daemon was started with');
  return opts.peer;
}

export function targetFor(spec: string, opts: TargetOptions): StreamTarget {
  if (spec === '-') return stdoutTarget();
  if (spec.startsWith('tape:')) {
    const t = parseTapeSpec(spec);
    if (t.file !== undefined) throw new InvalidInputError(`${spec}: a dump goes to the next tape file; #N is for reading`, 'give tape:DIR');
    return tapeTarget({ tapes: t.tapes, tapeSize: opts.tapeSize, recordSize: opts.recordSize, streamId: opts.streamId, nextTape: opts.nextTape, newTape: opts.newTape, notice: opts.notice });
  }
  if (isPeerSpec(spec)) return peerTarget(spec, { ...peerOptions(spec, opts), force: opts.force });
  if (isS3Spec(spec)) return s3Target(spec, { ...opts.s3, force: opts.force });
  refuseUnknownUrl(spec, MEDIA_FORMS);
  return fileTarget(spec, { force: opts.force });
}

export function sourceFor(spec: string, opts: SourceOptions = {}): StreamSource {
  if (spec === '-') return stdinSource();
  if (spec.startsWith('tape:')) return tapeSource({ ...parseTapeSpec(spec), volume: opts.volume, oneVolume: opts.oneVolume, acrossGaps: opts.acrossGaps });
  if (isPeerSpec(spec)) return peerSource(spec, peerOptions(spec, opts));
  if (isS3Spec(spec)) return s3Source(spec, opts.s3);
  refuseUnknownUrl(spec, MEDIA_FORMS);
  return fileSource(spec);
}

/** Reopens a stream where the catalog says it is (errors say "the catalog records it …": the caller names the dump). */
export function sourceForPosition(p: MediaPosition, opts: SourceOptions = {}): StreamSource {
  if (p.kind === 'file') return fileSource(p.location);
  if (p.kind === 'tape' && p.tapeFile !== undefined) return tapeSource({ tapes: p.tapes?.length ? p.tapes : [p.location], file: p.tapeFile, stream: p.stream });
  if (p.kind === 'peer') return peerSource(p.location, peerOptions(p.location, opts));
  if (p.kind === 's3') return s3Source(p.location, optionsForRecorded(p, opts.s3)); // on the store it was written to, unless one is given
  // a pipe keeps nothing (catalog rebuild --from -, or tape files piped into tape:/dev/stdin)
  if (p.kind === 'stdin' || p.kind === 'stdout' || (p.kind === 'tape' && /^\/dev\/(?:std(?:in|out|err)|fd\/\d+)$|^\/proc\/[^/]+\/fd\/\d+$/.test(p.location)))
    throw new NotFoundError(`the catalog records it as ${p.kind === 'stdout' || p.location === '/dev/stdout' ? 'written to' : 'read from'} a pipe (${p.location === '-' ? p.kind : p.location}), which keeps nothing to read it back from`, 'restore the chain with --from the tape directory, device or files it is on, e.g. restore --to VOL --from tape:DIR; or record where it is first: imgstream catalog rebuild --from tape:DIR');
  if (p.kind === 'tape') throw new NotFoundError(`the catalog records it on tape drive ${p.location} without a tape file number: a drive reads where it is positioned`, `position the tape at the dump's tape file with mt -f ${p.location} fsf N, and restore with --from tape:${p.location}`);
  throw new NotFoundError(`a stream on ${p.kind} ${p.location} cannot be read back from there`, 'give it with --from');
}
