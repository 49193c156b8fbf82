// Where the user's key comes from: a key file (32 bytes: raw, 64 hex digits or base64)
// or a passphrase file (its first line, stretched by scrypt with parameters and salt kept
// in each stream's header), or a passphrase asked for only once a stream turns out to be
// encrypted with one (the CLI types it at a prompt on a terminal). Errors name the file
// and never show its contents; files are read up to 64 KiB, and one that group or others
// may read is refused (as the peer token is).
import fs from 'node:fs';
import { AuthError, fromSystemError, InvalidInputError, NotFoundError, UsageError } from '../core/errors.js';

/**
 * A key given for reading also says the streams are meant to be encrypted: an unencrypted
 * one is refused (it cannot be authenticated) unless `allowUnencrypted` (a chain that
 * mixes both).
 */
interface ReadingKey {
  allowUnencrypted?: boolean;
}

export type KeySource = ({ kind: 'key'; key: Buffer; path: string } | { kind: 'passphrase'; passphrase: Buffer; path: string }) & ReadingKey;

/**
 * A passphrase asked for when a stream read needs one: `ask` runs at most once (the
 * answer is kept for the other streams of a chain), and only for a stream encrypted with
 * a passphrase (one encrypted with a key file is refused without asking).
 */
export interface KeyPrompt {
  kind: 'prompt';
  /** `stream`: the name of the stream that needs it (for the question). */
  ask: (stream: string) => Promise<Buffer>;
}

/**
 * Several key and passphrase files, for reading a chain whose dumps were encrypted with
 * different ones (a key rotated between dumps, some dumps with a passphrase): each stream
 * takes the one that passes its header's key check.
 */
export interface KeyRing extends ReadingKey {
  kind: 'ring';
  keys: KeySource[];
}

/** What a reader is given: a key source (or several), a prompt, or nothing (encrypted streams refused). */
export type KeyOption = KeySource | KeyRing | KeyPrompt | null;

export const KEY_BYTES = 32;
const MAKE_KEY = 'make one with: (umask 077; openssl rand -hex 32 > FILE)';
export const MIN_PASSPHRASE = 8;

/** No key or passphrase file is longer: a bound, so /dev/zero or a large file given by mistake is refused at once instead of read into memory for ever. */
export const MAX_SECRET_BYTES = 64 * 1024;

interface Secret {
  bytes: Buffer;
  /** True when the whole file was read (false: it holds more than MAX_SECRET_BYTES). */
  whole: boolean;
  /** The permission bits when group or others may access it (a regular file or a named pipe), else null. */
  exposed: number | null;
}

function readSecret(path: string, what: string): Secret {
  let fd: number;
  try {
    fd = fs.openSync(path, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && path !== '') throw new NotFoundError(`${path}: no such file or directory`, `check the --${what.replace(' ', '-')} path`);
    throw fromSystemError(err, path, `reading the ${what}`);
  }
  try {
    const st = fs.fstatSync(fd);
    // an anonymous pipe (<(...), /dev/fd/N) is 0600; a device's mode says nothing about who reads it
    const exposed = (st.isFile() || st.isFIFO()) && (st.mode & 0o077) !== 0 ? st.mode & 0o777 : null;
    const buf = Buffer.alloc(MAX_SECRET_BYTES + 1);
    let n = 0;
    while (n < buf.length) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    return { bytes: buf.subarray(0, Math.min(n, MAX_SECRET_BYTES)), whole: n <= MAX_SECRET_BYTES, exposed };
  } catch (err) {
    throw fromSystemError(err, path, `reading the ${what}`);
  } finally {
    fs.closeSync(fd);
  }
}

/** Like an ssh key or the peer token, a secret group or others may read is refused rather than trusted (checked once its contents are known to be a key or passphrase). */
function refuseExposed(secret: Secret, path: string, what: string): void {
  if (secret.exposed === null) return;
  throw new InvalidInputError(`${path}: group or others may read this ${what} (mode ${secret.exposed.toString(8).padStart(4, '0')})`, `run: chmod 600 ${path}`);
}

/** The key in a key file: exactly 32 raw bytes, or 64 hex digits, or 32 bytes in base64 (a trailing newline allowed). */
export function parseKeyFile(bytes: Buffer, path: string): Buffer {
  if (bytes.length === KEY_BYTES) return Buffer.from(bytes);
  const text = bytes.toString('latin1').trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex');
  if (/^[A-Za-z0-9+/]{43}=?$/.test(text)) {
    const k = Buffer.from(text, 'base64');
    if (k.length === KEY_BYTES) return k;
  }
  throw new InvalidInputError(`${path}: not a key file (it must hold 32 bytes: raw, as 64 hex digits, or in base64)`, MAKE_KEY);
}

/** The files given for a read: one source, or a ring of them (each stream of a chain takes the one it was encrypted with). */
export function readKeyRing(opts: { keyFiles: string[]; passphraseFiles: string[] }): KeySource | KeyRing | null {
  const keys = [...opts.keyFiles.map((keyFile) => readKeySource({ keyFile })!), ...opts.passphraseFiles.map((passphraseFile) => readKeySource({ passphraseFile })!)];
  if (keys.length === 0) return null;
  return keys.length === 1 ? keys[0] : { kind: 'ring', keys };
}

export function readKeySource(opts: { keyFile?: string; passphraseFile?: string }): KeySource | null {
  if (opts.keyFile !== undefined && opts.passphraseFile !== undefined) throw new UsageError('give either a key file or a passphrase file to encrypt with, not both');
  if (opts.keyFile !== undefined) {
    const secret = readSecret(opts.keyFile, 'key file');
    if (!secret.whole) throw new InvalidInputError(`${opts.keyFile}: not a key file (it holds more than ${MAX_SECRET_BYTES} bytes; a key is 32)`, MAKE_KEY);
    const key = parseKeyFile(secret.bytes, opts.keyFile);
    refuseExposed(secret, opts.keyFile, 'key file');
    return { kind: 'key', key, path: opts.keyFile };
  }
  if (opts.passphraseFile !== undefined) {
    const secret = readSecret(opts.passphraseFile, 'passphrase file');
    const raw = secret.bytes.toString('utf8');
    const end = raw.search(/\r?\n/);
    if (end < 0 && !secret.whole) throw new InvalidInputError(`${opts.passphraseFile}: not a passphrase file (its first line is longer than ${MAX_SECRET_BYTES} bytes)`);
    const line = end < 0 ? raw : raw.slice(0, end);
    if (line.length < MIN_PASSPHRASE) throw new InvalidInputError(`${opts.passphraseFile}: the passphrase (its first line) is shorter than ${MIN_PASSPHRASE} characters`);
    refuseExposed(secret, opts.passphraseFile, 'passphrase file');
    return { kind: 'passphrase', passphrase: Buffer.from(line, 'utf8'), path: opts.passphraseFile };
  }
  return null;
}

/** A passphrase typed at a prompt, to encrypt with (as long as a passphrase file's must be). */
export function typedPassphrase(text: string): KeySource {
  if (text.length < MIN_PASSPHRASE) throw new InvalidInputError(`the passphrase typed is shorter than ${MIN_PASSPHRASE} characters`);
  return { kind: 'passphrase', passphrase: Buffer.from(text, 'utf8'), path: 'the passphrase typed' };
}

/** A prompt that asks once: later streams of the same read get the same answer. */
export function keyPrompt(ask: (stream: string) => Promise<string>): KeyPrompt {
  let answer: Promise<Buffer> | null = null;
  return { kind: 'prompt', ask: (stream) => (answer ??= ask(stream).then((t) => Buffer.from(t, 'utf8'))) };
}

/**
 * The key sources to try on `stream`: `key` itself, those of a ring of the kind the stream
 * was encrypted with (`withPassphrase`), or the passphrase its prompt gives (asked only
 * when the stream was encrypted with a passphrase).
 */
export async function resolveKey(key: KeySource | KeyRing | KeyPrompt, withPassphrase: boolean, stream: string): Promise<KeySource[]> {
  if (key.kind === 'ring') {
    const fit = key.keys.filter((k) => (k.kind === 'passphrase') === withPassphrase);
    if (fit.length > 0) return fit;
    const given = key.keys.map((k) => k.path).join(', ');
    throw withPassphrase
      ? new AuthError(`${stream}: the stream was encrypted with a passphrase, and ${given} are key files`, 'give --passphrase-file')
      : new AuthError(`${stream}: the stream was encrypted with a key file, and ${given} are passphrase files`, 'give --key-file');
  }
  if (key.kind !== 'prompt') return [key];
  if (!withPassphrase) throw new AuthError(`${stream}: the stream was encrypted with a key file`, 'give --key-file FILE, as given to dump');
  return [{ kind: 'passphrase', passphrase: await key.ask(stream), path: 'the passphrase typed' }];
}
