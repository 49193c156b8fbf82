// Every failure imgstream reports is one of these classes: a stable `code`, a one-line
// message naming the problem, and a hint. EXIT_CODES is the one table that maps them to
// process exit codes; the CLI prints it in --help and the man pages.

export type ErrorCode =
  | 'usage'
  | 'not-found'
  | 'invalid-input'
  | 'not-a-volume'
  | 'exists'
  | 'busy'
  | 'volume-full'
  | 'corrupt'
  | 'io'
  | 'auth'
  | 'network'
  | 'interrupted'
  | 'hangup'
  | 'terminated';

export const EXIT_CODES: Record<ErrorCode, { exit: number; meaning: string }> = {
  usage: { exit: 2, meaning: 'bad command line: unknown flag, missing or conflicting argument' },
  'not-found': { exit: 3, meaning: 'a volume, snapshot or input file does not exist; a broken chain (a stream whose base snapshot is missing), in restore and verify alike; a tape set missing a tape of a dump' },
  'invalid-input': { exit: 4, meaning: 'a value is malformed or out of range (size, block size, name, expression, image, a flag\'s number or choice: --level 10, --max-snapshots 1.5), or streams that do not belong together (another volume, out of order)' },
  'not-a-volume': { exit: 5, meaning: 'the file is not an imgstream volume (a volume that is neither a regular file nor a block device, such as a named pipe, is refused before it is opened), or is of a format version this imgstream does not read: a volume, an image stream (file, pipe, tape, peer, S3), a tape file or backup log, the catalog, mirror state or resume file, a write journal or protection destination; or an image stream that needs features it does not have' },
  exists: { exit: 6, meaning: 'the target already exists (volume file, output file, snapshot name; a symbolic link to nothing counts), or a block device holds a file system or partition table (--force writes over it)' },
  busy: { exit: 7, meaning: 'another imgstream process holds the volume, or a snapshot it is reading, or the mirror destination (a transfer into it is under way); or the kernel holds a block device to be written (mounted, swap, LVM, md, dm-crypt)' },
  'volume-full': { exit: 8, meaning: 'the volume has no free block left for the change, or no free snapshot slot for a new snapshot (imgstream snapshot delete frees one)' },
  corrupt: { exit: 9, meaning: 'damaged data: a checksum or consistency check failed (a damaged snapshot table entry: volume check names it, and --drop-damaged-snapshots drops it); a write journal that lacks changes its volume committed' },
  io: { exit: 10, meaning: 'the operating system refused a read or write; a write of the output to stdout that failed after the command did its work, on a full disk or to a pipe whose reader went away (EPIPE, as in | head): one line saying so, as a stream to stdout (dump, volume export -t -) that fails; a command that runs until stopped (mirror start, protect, serve nbd, serve peer) stops then as on SIGTERM, with that line' },
  auth: { exit: 11, meaning: 'a peer refused the token, or its TLS certificate did not match; an encrypted stream read without its key, or with another key; an unencrypted stream read with a key (without --allow-unencrypted), or where the chain or the catalog says an encrypted one belongs' },
  network: { exit: 12, meaning: 'a peer could not be reached, the connection was lost or timed out, or the daemon is shutting down; an object store dropped the multipart upload of a running dump (aborted by someone else)' },
  // 128 + the signal's number, as a shell reports a process the signal ended
  interrupted: { exit: 130, meaning: 'stopped by SIGINT (Ctrl-C): a dump removes its partial output and the snapshot it took first' },
  hangup: { exit: 129, meaning: 'stopped by SIGHUP (its terminal or session went away): a dump removes its partial output and the snapshot it took first' },
  terminated: { exit: 143, meaning: 'stopped by SIGTERM: a dump removes its partial output and the snapshot it took first' },
};

/** Exit code of an unexpected internal error (a bug: please report it). */
export const EXIT_INTERNAL = 1;

export class ImgstreamError extends Error {
  readonly code: ErrorCode;
  readonly hint?: string;
  /** Structured facts behind the error (e.g. a check report), shown with --json. */
  details?: unknown;
  constructor(code: ErrorCode, message: string, hint?: string) {
    super(message);
    this.code = code;
    this.hint = hint;
    this.name = new.target.name;
  }
  get exitCode(): number {
    return EXIT_CODES[this.code].exit;
  }

  withDetails(details: unknown): this {
    this.details = details;
    return this;
  }
}

export class UsageError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('usage', message, hint); }
}
export class NotFoundError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('not-found', message, hint); }
}
export class InvalidInputError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('invalid-input', message, hint); }
}
export class NotAVolumeError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('not-a-volume', message, hint); }
}
/**
 * A file, stream or record of a format version this imgstream does not read (a newer
 * imgstream wrote it): exit 5 like any unreadable format version, one line naming what
 * it is, where, the version found and the versions read. Pure codecs throw it without
 * `where`; the reader that knows the file or stream names it with at().
 */
export class FormatVersionError extends NotAVolumeError {
  constructor(
    readonly what: string,
    readonly found: unknown,
    readonly reads: readonly number[],
    readonly where?: string,
    hint = 'read it with the imgstream version that wrote it, or a newer one',
  ) {
    super(`${where ? `${where}: ` : ''}${what} of format version ${String(found)}, which this imgstream does not read (it reads version${reads.length > 1 ? 's' : ''} ${reads.join(', ')})`, hint);
  }

  /** The same error naming where it was found (kept when already named). */
  at(where: string): FormatVersionError {
    return this.where !== undefined ? this : new FormatVersionError(this.what, this.found, this.reads, where, this.hint);
  }
}
/**
 * Something a newer imgstream wrote that uses a feature this one does not have: a required
 * feature bit of an image stream, or a required record type. Exit 5 like a newer format
 * version (nothing is damaged); `at` names where, as FormatVersionError's does.
 */
export class NewerFeatureError extends NotAVolumeError {
  constructor(
    readonly what: string,
    readonly where?: string,
  ) {
    super(`${where ? `${where}: ` : ''}${what}, which this imgstream does not have (a newer imgstream wrote it)`, 'read it with the imgstream version that wrote it, or a newer one');
  }

  at(where: string): NewerFeatureError {
    return this.where !== undefined ? this : new NewerFeatureError(this.what, where);
  }
}
export class ExistsError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('exists', message, hint); }
}
export class BusyError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('busy', message, hint); }
}
export class VolumeFullError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('volume-full', message, hint); }
}
export class CorruptError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('corrupt', message, hint); }
}
export class IoError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('io', message, hint); }
}

/** The file system refused a file of `bytes` (EFBIG: ext4 holds files up to 16 TiB, ext2 with 1 KiB blocks up to 16 GiB). */
export class FileTooLargeError extends IoError {
  constructor(message: string, hint: string | undefined, readonly bytes: number) { super(message, hint); }
}

export class AuthError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('auth', message, hint); }
}
export class NetworkError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('network', message, hint); }
}
export class InterruptedError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('interrupted', message, hint); }
}
export class HangupError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('hangup', message, hint); }
}
export class TerminatedError extends ImgstreamError {
  constructor(message: string, hint?: string) { super('terminated', message, hint); }
}

/** The signals an operation stops on cleanly (kill -9 cannot be caught: what it leaves, the next run cleans). */
export type StopSignal = 'SIGINT' | 'SIGHUP' | 'SIGTERM';

/** The error an operation stopped by `signal` ends with: exit 130 for SIGINT, 129 for SIGHUP, 143 for SIGTERM. */
export function stoppedBy(signal: StopSignal, message: string, hint?: string): ImgstreamError {
  if (signal === 'SIGHUP') return new HangupError(message, hint);
  return signal === 'SIGINT' ? new InterruptedError(message, hint) : new TerminatedError(message, hint);
}

const ERROR_CLASSES: Record<ErrorCode, new (message: string, hint?: string) => ImgstreamError> = {
  usage: UsageError,
  'not-found': NotFoundError,
  'invalid-input': InvalidInputError,
  'not-a-volume': NotAVolumeError,
  exists: ExistsError,
  busy: BusyError,
  'volume-full': VolumeFullError,
  corrupt: CorruptError,
  io: IoError,
  auth: AuthError,
  network: NetworkError,
  interrupted: InterruptedError,
  hangup: HangupError,
  terminated: TerminatedError,
};

/**
 * The error of class `code` (an error that crossed a process boundary, e.g. from a
 * server's control socket, is raised again as itself, with its exit code); a code this
 * version does not know becomes a plain Error (an internal error).
 */
export function errorOfCode(code: string, message: string, hint?: string, details?: unknown): Error {
  const cls = Object.hasOwn(ERROR_CLASSES, code) ? ERROR_CLASSES[code as ErrorCode] : undefined;
  if (!cls) return new Error(message);
  const err = new cls(message, hint);
  if (details !== undefined) err.withDetails(details);
  return err;
}

/**
 * `err` with what undoing the failed operation left behind added to its line (an S3
 * upload that could not be aborted): same code and hint, so the same exit code.
 */
export function withLeftBehind(err: unknown, left: string): unknown {
  if (!(err instanceof ImgstreamError)) return err;
  const e = errorOfCode(err.code, `${err.message}; ${left}`, err.hint, err.details);
  if (e instanceof ImgstreamError && e.constructor !== err.constructor) return err; // a subclass with its own fields: kept as it is
  return e;
}

/** Turns an operating-system error on `path` into a named imgstream error. */
export function fromSystemError(err: unknown, path: string, doing: string): ImgstreamError {
  if (err instanceof ImgstreamError) return err;
  const e = err as NodeJS.ErrnoException;
  if (path === '' && e?.code === 'ENOENT') return new InvalidInputError(`empty path given while ${doing}`, 'give a file name');
  switch (e?.code) {
    case 'ENOENT':
      return new NotFoundError(`${path}: no such file or directory`);
    case 'EEXIST':
      return new ExistsError(`${path}: already exists`, 'choose another path or remove it first');
    case 'EACCES':
    case 'EPERM':
      return new IoError(`${path}: permission denied while ${doing}`);
    case 'EISDIR':
      return new InvalidInputError(`${path}: is a directory`);
    case 'ENOSPC':
      return new IoError(`${path}: no space left on the device while ${doing}`);
    case 'EROFS':
      return new IoError(`${path}: read-only file system while ${doing}`, 'give a path on a writable file system, or remount it read-write');
    case 'EDQUOT':
      return new IoError(`${path}: disk quota exceeded while ${doing}`);
    case 'ENAMETOOLONG':
      return new InvalidInputError(`${path}: file name too long (at most 255 bytes per name)`, 'choose a shorter name');
    case 'ENOTDIR':
      return new InvalidInputError(`${path}: a part of the path is not a directory`);
    default:
      return new IoError(`${path}: ${e?.message ?? String(err)} while ${doing}`);
  }
}
