// The key flags of encrypted streams (dump --encrypt, restore, verify), read into a
// KeySource before anything else happens (a missing or malformed key file fails first).
import { Flags } from '@oclif/core';
import { readKeySource, type KeySource } from '../../src/crypt/index.js';
import { UsageError } from '../../src/errors.js';

export const keyFlags = {
  'key-file': Flags.string({ helpValue: 'FILE', description: 'Key of encrypted streams: a file of 32 bytes, raw, as 64 hex digits or in base64 (e.g. from "openssl rand -hex 32").' }),
  'passphrase-file': Flags.string({ helpValue: 'FILE', description: 'Passphrase of encrypted streams: the first line of FILE (at least 8 characters), stretched by scrypt.' }),
};

export const encryptFlag = {
  encrypt: Flags.boolean({ description: 'Encrypt the stream (AES-256-GCM) with --key-file or --passphrase-file.' }),
};

export function keyFromFlags(flags: { 'key-file'?: string; 'passphrase-file'?: string }): KeySource | null {
  return readKeySource({ keyFile: flags['key-file'], passphraseFile: flags['passphrase-file'] });
}

/** dump: --encrypt needs a key, and a key needs --encrypt (a key alone would be a mistake: an unencrypted dump). */
export function dumpKeyFromFlags(flags: { encrypt?: boolean; 'key-file'?: string; 'passphrase-file'?: string }): KeySource | null {
  const given = flags['key-file'] !== undefined || flags['passphrase-file'] !== undefined;
  if (flags.encrypt && !given) throw new UsageError('--encrypt needs --key-file FILE or --passphrase-file FILE');
  if (!flags.encrypt && given) throw new UsageError('--key-file and --passphrase-file encrypt a dump only with --encrypt');
  return flags.encrypt ? keyFromFlags(flags) : null;
}
