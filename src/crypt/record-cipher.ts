// The AEAD of encrypted streams: AES-256-GCM from node:crypto. Each stream has its own
// record key, nonce prefix and key check value, derived with HKDF-SHA256 from the user's
// key (or from a passphrase through scrypt) and a random 32-byte salt in its header. A
// record's nonce is the 4-byte prefix then its sequence number (u64): a stream never
// seals two records with one sequence number (seal refuses), and no two streams share a
// record key. The associated data binds each record to the header (its SHA-256, which
// holds the stream id) and to its place: sequence number, type and flags.
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes, scryptSync, timingSafeEqual } from 'node:crypto';
import { AuthError, CorruptError, InvalidInputError } from '../core/errors.js';
import type { KeySource } from './key-source.js';

export const TAG_BYTES = 16;
const SALT_BYTES = 32;
/** scrypt cost for passphrases: 2^15 x 8 x 128 bytes = 32 MiB of memory, about 0.1 s. */
const SCRYPT = { N: 1 << 15, r: 8, p: 1 };

/** What a stream header says of its encryption (no key material: salts and a check value). */
export interface StreamEncryption {
  cipher: 'aes-256-gcm';
  /** HKDF-SHA256 salt, 32 random bytes (hex). */
  salt: string;
  /** Present when the key is stretched from a passphrase. */
  scrypt?: { salt: string; N: number; r: number; p: number };
  /** Key check value (16 bytes, hex): tells a wrong key from a damaged stream. */
  check: string;
}

interface StreamKeys {
  recordKey: Buffer;
  noncePrefix: Buffer;
  check: Buffer;
}

function masterKey(source: KeySource, enc: StreamEncryption, stream: string): Buffer {
  if (source.kind === 'key') {
    if (enc.scrypt) throw new AuthError(`${stream}: the stream was encrypted with a passphrase, and ${source.path} is a key file`, 'give --passphrase-file');
    return source.key;
  }
  if (!enc.scrypt) throw new AuthError(`${stream}: the stream was encrypted with a key file, and ${source.path} is a passphrase file`, 'give --key-file');
  const { salt, N, r, p } = enc.scrypt;
  if (!Number.isSafeInteger(N) || N < 2 || N > 1 << 22 || !Number.isSafeInteger(r) || r < 1 || r > 32 || !Number.isSafeInteger(p) || p < 1 || p > 16) {
    throw new CorruptError(`${stream}: damaged stream header (scrypt parameters out of range)`);
  }
  return scryptSync(source.passphrase, Buffer.from(salt, 'hex'), 32, { N, r, p, maxmem: 256 * N * r + (1 << 20) });
}

function derive(source: KeySource, enc: StreamEncryption, stream = 'new stream'): StreamKeys {
  const master = masterKey(source, enc, stream);
  const salt = Buffer.from(enc.salt, 'hex');
  const hk = (info: string, n: number) => Buffer.from(hkdfSync('sha256', master, salt, info, n));
  return { recordKey: hk('imgstream v1 record key', 32), noncePrefix: hk('imgstream v1 nonce prefix', 4), check: hk('imgstream v1 key check', 16) };
}

/** The encryption fields of a new stream's header, with fresh random salts. */
export function newStreamEncryption(source: KeySource): StreamEncryption {
  const enc: StreamEncryption = { cipher: 'aes-256-gcm', salt: randomBytes(SALT_BYTES).toString('hex'), check: '' };
  if (source.kind === 'passphrase') enc.scrypt = { salt: randomBytes(SALT_BYTES).toString('hex'), ...SCRYPT };
  enc.check = derive(source, enc).check.toString('hex');
  return enc;
}

export function validEncryption(e: unknown): e is StreamEncryption {
  const x = e as StreamEncryption;
  const hex = (s: unknown, n: number) => typeof s === 'string' && s.length === 2 * n && /^[0-9a-f]+$/.test(s);
  return !!x && x.cipher === 'aes-256-gcm' && hex(x.salt, SALT_BYTES) && hex(x.check, 16) && (x.scrypt === undefined || (hex(x.scrypt.salt, SALT_BYTES) && typeof x.scrypt.N === 'number'));
}

/**
 * What sealing one record takes, handed to a compression worker with its payload (the
 * flags byte of the associated data, offset 41, is completed by whoever seals: ZSTD is
 * known only once compressed).
 */
export interface SealJob {
  key: Uint8Array;
  nonce: Uint8Array;
  aad: Uint8Array;
  flags: number;
}

/**
 * Seals `plain` for `job` with the record's final `flags`: the ciphertext (a buffer that
 * owns its memory, so it can be transferred) and the 16-byte tag that follows it in the
 * stream. Not copied into one buffer: a megabyte copied per record showed in the dump's
 * throughput.
 */
export function sealParts(job: SealJob, flags: number, plain: Uint8Array): { body: Buffer; tag: Buffer } {
  const c = createCipheriv('aes-256-gcm', job.key, job.nonce, { authTagLength: TAG_BYTES });
  const aad = Buffer.from(job.aad);
  aad[41] = flags;
  c.setAAD(aad);
  let body = c.update(plain);
  const fin = c.final(); // empty for GCM
  if (fin.length) body = Buffer.concat([body, fin]);
  if (body.byteOffset !== 0 || body.buffer.byteLength !== body.length) body = Buffer.from(Uint8Array.prototype.slice.call(body).buffer);
  return { body, tag: c.getAuthTag() };
}

/** Ciphertext then tag in one buffer. */
export function sealPayload(job: SealJob, flags: number, plain: Uint8Array): Buffer {
  const { body, tag } = sealParts(job, flags, plain);
  return Buffer.concat([body, tag]);
}

export class RecordCipher {
  private last = -1;

  private constructor(private readonly keys: StreamKeys, private readonly headerDigest: Buffer) {}

  /**
   * The cipher of one stream: `headerDigest` is the SHA-256 of its preamble, header frame
   * and header payload; `source`, the key (or the keys to try, in order). Throws AuthError
   * when no key passes the header's check.
   */
  static open(source: KeySource | KeySource[], enc: StreamEncryption, headerDigest: Buffer, stream: string): RecordCipher {
    if (enc.cipher !== 'aes-256-gcm') throw new InvalidInputError(`${stream}: unknown cipher ${String(enc.cipher)}`);
    const sources = Array.isArray(source) ? source : [source];
    const want = Buffer.from(enc.check, 'hex');
    // several keys (a chain dumped with a key rotated between dumps): the one that passes the check
    for (const s of sources) {
      const keys = derive(s, enc, stream);
      if (want.length === keys.check.length && timingSafeEqual(want, keys.check)) return new RecordCipher(keys, headerDigest);
    }
    const tried = sources.length === 1 ? `${sources[0].path} does not decrypt` : `none of ${sources.map((s) => s.path).join(', ')} decrypts`;
    throw new AuthError(`${stream}: wrong key: ${tried} this stream`, 'give the key or passphrase file the stream was dumped with');
  }

  /** The nonce of record `seq` (the header is record 1). */
  nonce(seq: number): Buffer {
    const n = Buffer.alloc(12);
    this.keys.noncePrefix.copy(n, 0);
    n.writeBigUInt64LE(BigInt(seq), 4);
    return n;
  }

  private aad(seq: number, type: number, flags: number, extra?: Buffer): Buffer {
    const a = Buffer.alloc(32 + 10 + (extra?.length ?? 0));
    this.headerDigest.copy(a, 0);
    a.writeBigUInt64LE(BigInt(seq), 32);
    a[40] = type;
    a[41] = flags;
    extra?.copy(a, 42);
    return a;
  }

  /**
   * The job that seals record `seq` (sealPayload, here or on a worker thread). Sequence
   * numbers must rise: a nonce is never used twice.
   */
  job(seq: number, type: number, flags: number, extraAad?: Buffer): SealJob {
    if (!(seq > this.last)) throw new Error(`record sequence number ${seq} after ${this.last}: a nonce would repeat`);
    this.last = seq;
    return { key: this.keys.recordKey, nonce: this.nonce(seq), aad: this.aad(seq, type, flags, extraAad), flags };
  }

  /** Ciphertext then 16-byte tag (sealPayload of job()). */
  seal(seq: number, type: number, flags: number, plain: Buffer, extraAad?: Buffer): Buffer {
    return sealPayload(this.job(seq, type, flags, extraAad), flags, plain);
  }

  /** The plaintext of a sealed payload, or null when it fails authentication. */
  open(seq: number, type: number, flags: number, stored: Buffer, extraAad?: Buffer): Buffer | null {
    if (stored.length < TAG_BYTES) return null;
    const d = createDecipheriv('aes-256-gcm', this.keys.recordKey, this.nonce(seq), { authTagLength: TAG_BYTES });
    d.setAAD(this.aad(seq, type, flags, extraAad));
    d.setAuthTag(stored.subarray(stored.length - TAG_BYTES));
    const body = d.update(stored.subarray(0, stored.length - TAG_BYTES));
    try {
      const fin = d.final();
      return fin.length ? Buffer.concat([body, fin]) : body;
    } catch {
      return null;
    }
  }
}
