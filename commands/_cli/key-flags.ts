// The key flags of encrypted streams (dump --encrypt; restore and verify, which take several
// for a chain dumped with several keys), read into a KeySource (or a ring of them) before
// anything else happens (a missing or malformed key file fails first).
// Without a key flag, on a terminal, the passphrase is typed at a prompt without echo:
// twice for a dump (both must match), once for a read, and only when a stream turns out
// to be encrypted with a passphrase. Elsewhere (a script, a pipe) nothing is asked.
import { Flags } from '@oclif/core';
import { keyPrompt, readKeyRing, readKeySource, typedPassphrase, type KeyOption, type KeySource } from '../../src/crypt/index.js';
import { InvalidInputError, UsageError } from '../../src/core/errors.js';
import { canPrompt, readHidden } from './passphrase-prompt.js';

const KEY_FILE = 'Key of encrypted streams: a file of 32 bytes, raw, as 64 hex digits or in base64 (e.g. from "openssl rand -hex 32"), readable by its owner only (chmod 600).';
const PASSPHRASE_FILE = 'Passphrase of encrypted streams: the first line of FILE (at least 8 characters, the file readable by its owner only), stretched by scrypt. Without this flag or --key-file, on a terminal, the passphrase is asked for (without echo).';

/** dump --encrypt: the one key to encrypt with. */
export const keyFlags = {
  'key-file': Flags.string({ helpValue: 'FILE', description: KEY_FILE }),
  'passphrase-file': Flags.string({ helpValue: 'FILE', description: PASSPHRASE_FILE }),
};

/** restore, verify: every key a chain was dumped with (each repeatable). */
export const readingKeyFlags = {
  'key-file': Flags.string({ helpValue: 'FILE', description: `${KEY_FILE} Repeatable, and with --passphrase-file, for a chain dumped with several (a key rotated between dumps): each stream takes the one that decrypts it.`, multiple: true, multipleNonGreedy: true }),
  'passphrase-file': Flags.string({ helpValue: 'FILE', description: `${PASSPHRASE_FILE} Repeatable, and with --key-file, for a chain dumped with several: each stream takes the one that decrypts it.`, multiple: true, multipleNonGreedy: true }),
};

/** restore, verify: a chain of encrypted and unencrypted streams read with a key. */
export const allowUnencryptedFlag = {
  'allow-unencrypted': Flags.boolean({
    description: 'With --key-file or --passphrase-file, also read streams that are not encrypted (a chain whose later dumps were encrypted). Without it a key means every stream must be encrypted: an unencrypted one cannot be authenticated and is refused with the "auth" code (11). Even with it (and without a key too), an unencrypted stream is refused (11), for it could be anyone\'s, after an encrypted one of the same chain, or where the catalog (--catalog) records the dump as encrypted: the dump of the stream\'s id, the dump recorded at its place (a file, an S3 object, a peer\'s stream), or, when the catalog records no dump of its id, a dump of the same volume, level and top snapshot.',
  }),
};

export const encryptFlag = {
  encrypt: Flags.boolean({ description: 'Encrypt the stream (AES-256-GCM) with --key-file, --passphrase-file, or a passphrase typed twice at a prompt (on a terminal).' }),
};

/** restore, verify: the keys the flags name; without one, a prompt on a terminal, else none. */
export function keyFromFlags(flags: { 'key-file'?: string[]; 'passphrase-file'?: string[]; 'allow-unencrypted'?: boolean }): KeyOption {
  const allowUnencrypted = flags['allow-unencrypted'] === true;
  const keyFiles = flags['key-file'] ?? [];
  const passphraseFiles = flags['passphrase-file'] ?? [];
  if (allowUnencrypted && keyFiles.length === 0 && passphraseFiles.length === 0) throw new UsageError('--allow-unencrypted goes with --key-file or --passphrase-file', 'without a key, unencrypted streams are read anyway');
  // several: a chain whose dumps were encrypted with different keys or passphrases
  const key = readKeyRing({ keyFiles, passphraseFiles });
  if (key) return { ...key, allowUnencrypted };
  if (!canPrompt()) return key;
  return keyPrompt((stream) => readHidden(`passphrase of ${stream}: `));
}

/** dump: --encrypt needs a key (typed twice on a terminal), and a key needs --encrypt (a key alone would be a mistake: an unencrypted dump). */
export async function dumpKeyFromFlags(flags: { encrypt?: boolean; 'key-file'?: string; 'passphrase-file'?: string }): Promise<KeySource | null> {
  const given = flags['key-file'] !== undefined || flags['passphrase-file'] !== undefined;
  if (!flags.encrypt && given) throw new UsageError('--key-file and --passphrase-file encrypt a dump only with --encrypt');
  if (!flags.encrypt) return null;
  if (given) return readKeySource({ keyFile: flags['key-file'], passphraseFile: flags['passphrase-file'] });
  if (!canPrompt()) throw new UsageError('--encrypt needs --key-file FILE or --passphrase-file FILE', 'or run it on a terminal to type a passphrase');
  const first = await readHidden('passphrase to encrypt with: ');
  const key = typedPassphrase(first);
  if ((await readHidden('the same passphrase again: ')) !== first) throw new InvalidInputError('the two passphrases typed differ', 'nothing was dumped; run it again');
  return key;
}
