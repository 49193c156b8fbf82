// The shared token both ends of a peer connection hold (--token-file): the key of the
// HMACs that authenticate each side, never sent. Like an ssh key it must be readable by
// its owner only; a file others may read is refused rather than trusted.
import fs from 'node:fs';
import { InvalidInputError, NotFoundError, fromSystemError } from '../core/errors.js';

/** Fewer bytes than this are too easy to guess. */
export const MIN_TOKEN_BYTES = 16;
const MAX_TOKEN_BYTES = 4096;
const MAKE_ONE = '(umask 077; openssl rand -hex 32 > FILE)';

/** The token in `file` (trailing white space and newlines dropped, so `echo`-made files work on both sides). */
export function readTokenFile(file: string): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new NotFoundError(`token file ${file}: no such file`, `make one with ${MAKE_ONE.replace('FILE', file)} and copy it to the other side`);
    if (code === 'ELOOP') throw new InvalidInputError(`token file ${file}: is a symbolic link`, 'give the file itself');
    throw fromSystemError(err, `token file ${file}`, 'reading the token');
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new InvalidInputError(`token file ${file}: not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new InvalidInputError(`token file ${file}: group or others may access it (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')})`, `run: chmod 600 ${file}`);
    }
    if (st.size > MAX_TOKEN_BYTES) throw new InvalidInputError(`token file ${file}: too large for a token (${st.size} bytes)`);
    const token = Buffer.from(fs.readFileSync(fd).toString('latin1').replace(/\s+$/, ''), 'latin1');
    if (token.length === 0) throw new InvalidInputError(`token file ${file}: empty`, `make a token with ${MAKE_ONE.replace('FILE', file)}`);
    if (token.length < MIN_TOKEN_BYTES) throw new InvalidInputError(`token file ${file}: the token is too short (${token.length} bytes, at least ${MIN_TOKEN_BYTES})`, `make one with ${MAKE_ONE.replace('FILE', file)}`);
    return token;
  } finally {
    fs.closeSync(fd);
  }
}
