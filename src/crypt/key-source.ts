// Where the user's key comes from: a key file (32 bytes: raw, 64 hex digits or base64)
// or a passphrase file (its first line, stretched by scrypt with parameters and salt kept
// in each stream's header). Errors name the file and never show its contents.
import fs from 'node:fs';
import { fromSystemError, InvalidInputError } from '../errors.js';

export type KeySource = { kind: 'key'; key: Buffer; path: string } | { kind: 'passphrase'; passphrase: Buffer; path: string };

export const KEY_BYTES = 32;

function readSecret(path: string, what: string): Buffer {
  try {
    return fs.readFileSync(path);
  } catch (err) {
    throw fromSystemError(err, path, `reading the ${what}`);
  }
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
  throw new InvalidInputError(`${path}: not a key file (it must hold 32 bytes: raw, as 64 hex digits, or in base64)`, 'make one with: head -c 32 /dev/urandom > FILE, or openssl rand -hex 32 > FILE');
}

export function readKeySource(opts: { keyFile?: string; passphraseFile?: string }): KeySource | null {
  if (opts.keyFile !== undefined && opts.passphraseFile !== undefined) throw new InvalidInputError('give either a key file or a passphrase file, not both');
  if (opts.keyFile !== undefined) return { kind: 'key', key: parseKeyFile(readSecret(opts.keyFile, 'key file'), opts.keyFile), path: opts.keyFile };
  if (opts.passphraseFile !== undefined) {
    const raw = readSecret(opts.passphraseFile, 'passphrase file').toString('utf8');
    const line = raw.split(/\r?\n/)[0];
    if (line.length < 8) throw new InvalidInputError(`${opts.passphraseFile}: the passphrase (its first line) is shorter than 8 characters`);
    return { kind: 'passphrase', passphrase: Buffer.from(line, 'utf8'), path: opts.passphraseFile };
  }
  return null;
}
