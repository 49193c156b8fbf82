// Reads an image stream record by record, checking everything as it goes: the preamble
// and its required features, every record's crc32, every zstd frame (and its content
// checksum), payload layouts, the record order (header first, trailer last, nothing
// after), and at the end the trailer's counts and the SHA-256 of the whole stream. Any
// failure is a CorruptError naming the stream and what is wrong; a stream that ends
// early is reported as incomplete. An encrypted stream is read with its key (crypt/):
// the key check and the AUTH record come before the header is handed on, and every
// record is authenticated before it is; without the key it is refused (AuthError), or,
// for catalog rebuild, read for its header and trailer only.
import { createHash } from 'node:crypto';
import { Decompressor } from 'zstd-napi';
import { AlignedAllocator, DIRECT_UNIT } from '../fs/direct-io.js';
import { AuthError, CorruptError, FormatVersionError, NewerFeatureError, NotAVolumeError } from '../core/errors.js';
import { ROOT_MAGIC } from '../format/volume-root.js';
import { RecordCipher, resolveKey, type KeyOption } from '../crypt/index.js';
import {
  decodeData,
  decodeDealloc,
  decodeFrame,
  decodeHeader,
  decodeMapDeltas,
  decodePlane,
  decodePreamble,
  decodeTrailer,
  FEATURE_ENCRYPTED,
  FEATURE_MAPDELTA,
  FLAG_OPTIONAL,
  FLAG_SEALED,
  FLAG_ZSTD,
  FRAME_BYTES,
  SEAL_TAG_BYTES,
  payloadCrc,
  PREAMBLE_BYTES,
  RecordType,
  STREAM_MAGIC,
  StreamFormatError,
  type MapDelta,
  type StreamHeader,
  type StreamTrailer,
} from '../format/image-stream.js';

export type StreamRecord =
  | { type: 'header'; header: StreamHeader }
  | { type: 'plane'; snapshotIndex: number; chunks: number[]; data: Buffer }
  | { type: 'data'; vbns: number[]; data: Buffer }
  | { type: 'dealloc'; ranges: Array<[number, number]> }
  | { type: 'mapdelta'; nodes: MapDelta[] }
  | { type: 'trailer'; trailer: StreamTrailer; streamBytes: number };

/**
 * Called with each buffer the records of a stream were views of, once the consumer is done
 * with them; returns when the buffer may be overwritten (its data may still be being
 * written somewhere), or nothing for "at once".
 */
export type ReleaseBuffer = (buf: Buffer) => Promise<void> | void;

/** Bytes a buffer for a record that spans two chunks is rounded up to. */
const SPAN_GRAIN = 1 << 20;
const MAX_SPAN_SPARES = 4;

/**
 * Pulls exact byte counts out of an async iterable of chunks. The chunks read to their
 * end go to `release` when the caller says every view of them it took is done with. A
 * read that spans chunks is copied into a buffer of its own, which goes to `release`
 * too and is then reused: a fresh megabyte per spanning record costs more in garbage
 * collection than the copy.
 */
class ByteReader {
  private readonly it: AsyncIterator<Buffer>;
  private bufs: Buffer[] = [];
  private consumed: Buffer[] = [];
  private readonly spans = new WeakSet<ArrayBufferLike>();
  private readonly spares: Buffer[] = [];
  private readonly aligned = new AlignedAllocator(2 * MAX_SPAN_SPARES);
  private have = 0;
  private ended = false;
  offset = 0;

  constructor(src: AsyncIterable<Buffer>, private readonly release?: ReleaseBuffer) {
    this.it = src[Symbol.asyncIterator]();
  }

  /** The bytes read ahead but not taken (after a read() that found too few: what there was). */
  leftover(): Buffer {
    return Buffer.concat(this.bufs);
  }

  private done(buf: Buffer): void {
    if (this.release) this.consumed.push(buf);
  }

  /** The caller is done with every view it has taken so far: the chunks read to their end go to `release`. */
  viewsDone(): void {
    for (const buf of this.consumed.splice(0)) {
      const after = this.release!(buf);
      if (!this.spans.has(buf.buffer)) continue;
      const whole = Buffer.from(buf.buffer, 0, buf.buffer.byteLength);
      Promise.resolve(after).then(
        () => {
          if (this.spares.length < MAX_SPAN_SPARES) this.spares.push(whole);
        },
        () => undefined,
      );
    }
  }

  /**
   * A buffer of n bytes for a spanning read: a spare one where the caller releases what it
   * read. Spares are page-aligned and the read goes at the same offset modulo DIRECT_UNIT
   * as in the stream, so blocks aligned in the stream (see PAD) stay aligned in memory.
   */
  private spanBuffer(n: number): Buffer {
    if (!this.release) return Buffer.allocUnsafe(n);
    const phase = this.offset % DIRECT_UNIT;
    const i = this.spares.findIndex((b) => b.length >= phase + n);
    const whole = i >= 0 ? this.spares.splice(i, 1)[0] : this.aligned.take(Math.ceil((phase + n) / SPAN_GRAIN) * SPAN_GRAIN);
    this.spans.add(whole.buffer);
    const out = whole.subarray(phase, phase + n);
    this.consumed.push(out);
    return out;
  }

  /** Exactly n bytes, or null when the stream ended before (then `short` holds what was there). */
  async read(n: number): Promise<Buffer | null> {
    while (this.have < n && !this.ended) {
      const r = await this.it.next();
      if (r.done) this.ended = true;
      else if (r.value.length) {
        this.bufs.push(Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value));
        this.have += r.value.length;
      }
    }
    if (this.have < n) return null;
    let out: Buffer;
    if (this.bufs[0].length >= n) {
      out = this.bufs[0].subarray(0, n);
      this.bufs[0] = this.bufs[0].subarray(n);
      if (this.bufs[0].length === 0) this.done(this.bufs.shift()!);
    } else {
      out = this.spanBuffer(n);
      let o = 0;
      while (o < n) {
        const b = this.bufs[0];
        const take = Math.min(b.length, n - o);
        b.copy(out, o, 0, take);
        o += take;
        if (take === b.length) this.done(this.bufs.shift()!);
        else this.bufs[0] = b.subarray(take);
      }
    }
    this.have -= n;
    this.offset += n;
    return out;
  }

  async atEnd(): Promise<boolean> {
    if (this.have > 0) return false;
    const r = await this.it.next();
    if (r.done) return true;
    this.bufs.push(r.value);
    this.have += r.value.length;
    return r.value.length === 0 ? this.atEnd() : false;
  }

  async close(): Promise<void> {
    await this.it.return?.();
  }
}

/**
 * The records of a stream, checked. Records are views into the chunks `src` gives;
 * `release` gets each chunk once the records from it have been handed out and the
 * consumer has asked for the next one (so it is done with them, or has passed them on).
 */
export interface ReadOptions {
  /** The key of encrypted streams, or a prompt asked once one is met (ignored for others). */
  key?: KeyOption;
  /**
   * An encrypted stream without a key: 'refuse' (AuthError, the default), or 'headers':
   * hand on the header and the trailer only, checked by crc32 and the SHA-256 chain but
   * not authenticated (catalog rebuild).
   */
  withoutKey?: 'refuse' | 'headers';
}

export async function* readImageStream(src: AsyncIterable<Buffer>, name: string, release?: ReleaseBuffer, opts: ReadOptions = {}): AsyncGenerator<StreamRecord> {
  const bytes = new ByteReader(src, release);
  const hash = createHash('sha256');
  const decompressor = new Decompressor();
  const fail = (what: string, hint?: string): never => {
    throw new CorruptError(`${name}: ${what}`, hint);
  };
  // bytes that do not begin as a stream does are no stream at all (code 5, as for a file that is no volume), not a damaged one
  const notAStream = (head: Buffer): never => {
    if (head.length >= 8 && head.toString('latin1', 0, 8) === ROOT_MAGIC) throw new NotAVolumeError(`${name}: is an imgstream volume, not an image stream`, 'give a stream a dump wrote (imgstream dump VOL --level 0 --to FILE makes one)');
    throw new NotAVolumeError(`${name}: not an imgstream image stream (bad magic)`);
  };
  const incomplete = (where: string): never =>
    fail(`stream is incomplete: it ends ${where}`, 'the dump did not finish or the stream was cut short; take it again or use an earlier one');
  try {
    const pre = await bytes.read(PREAMBLE_BYTES);
    if (!pre) {
      // a few bytes that are not the start of a stream are no stream at all, not a cut one
      const got = bytes.leftover();
      const magic = Buffer.from(STREAM_MAGIC, 'latin1');
      if (got.length > 0 && !magic.subarray(0, Math.min(got.length, magic.length)).equals(got.subarray(0, magic.length))) return notAStream(got);
      return incomplete(got.length === 0 && bytes.offset === 0 ? 'before it starts (empty)' : 'inside its preamble');
    }
    if (pre.toString('latin1', 0, 8) !== STREAM_MAGIC) return notAStream(pre);
    let preamble: ReturnType<typeof decodePreamble>;
    try {
      preamble = decodePreamble(pre);
    } catch (err) {
      if (err instanceof FormatVersionError || err instanceof NewerFeatureError) throw err.at(name);
      return fail((err as Error).message);
    }
    hash.update(pre);
    if (preamble.length > PREAMBLE_BYTES) {
      const extra = await bytes.read(preamble.length - PREAMBLE_BYTES);
      if (!extra) return incomplete('inside its preamble');
      hash.update(extra);
    }
    let header: StreamHeader | null = null;
    let records = 0;
    let dataBlocks = 0;
    let dataBytes = 0;
    let planeRecords = 0;
    let mapDeltaNodes = 0;
    const encrypted = (preamble.features & FEATURE_ENCRYPTED) !== 0;
    let cipher: RecordCipher | null = null;
    /** Encrypted, read without the key: records after the header are passed over. */
    let blind = false;
    /** An encrypted stream's header, handed on once its AUTH record is checked. */
    let pendingHeader: StreamHeader | null = null;
    for (;;) {
      bytes.viewsDone(); // the last record's consumer asked for this one
      const at = bytes.offset;
      const fb = await bytes.read(FRAME_BYTES);
      if (!fb) return incomplete(bytes.offset === at && (await bytes.atEnd()) ? `after record ${records} without a trailer` : `inside the frame of record ${records + 1}`);
      let frame: ReturnType<typeof decodeFrame>;
      try {
        frame = decodeFrame(fb);
      } catch (err) {
        return fail(`record ${records + 1} at byte ${at}: ${(err as Error).message}`);
      }
      const stored = await bytes.read(frame.storedLength);
      if (!stored) return incomplete(`inside record ${records + 1} (byte ${at})`);
      if (payloadCrc(stored) !== frame.crc) return fail(`record ${records + 1} at byte ${at} fails its checksum`);
      if (frame.type === RecordType.Header && frame.flags !== 0) return fail(`record ${records + 1} at byte ${at}: a header frame carries no flags`);
      if (frame.type === RecordType.Trailer && frame.flags !== (encrypted ? FLAG_SEALED : 0)) return fail(`record ${records + 1} at byte ${at}: a trailer frame carries no flags${encrypted ? ' but SEALED' : ''}`);
      if (frame.type !== RecordType.Header && ((frame.flags & FLAG_SEALED) !== 0) !== encrypted) {
        return fail(`record ${records + 1} at byte ${at} is ${encrypted ? 'not sealed in an encrypted' : 'sealed in an unencrypted'} stream`);
      }
      if (frame.type === RecordType.Trailer) {
        if (!header) return fail('trailer before the header');
        if (pendingHeader) return fail('the header is not followed by its AUTH record');
        let trailer: StreamTrailer;
        try {
          const t = encrypted ? stored.subarray(0, stored.length - SEAL_TAG_BYTES) : stored;
          trailer = decodeTrailer(t);
          if (cipher && !cipher.open(records + 1, RecordType.Trailer, frame.flags, stored.subarray(t.length), t)) {
            return fail('the trailer fails authentication (changed, or records were dropped or added)');
          }
        } catch (err) {
          if (err instanceof CorruptError) throw err; // named already
          return fail((err as Error).message);
        }
        const digest = hash.digest('hex');
        if (trailer.sha256 !== digest) return fail('stream checksum (SHA-256 chain) does not match its trailer');
        if (blind) {
          if (trailer.records !== records || trailer.streamBytes !== at) return fail('record counts do not match the trailer');
        } else if (trailer.records !== records || trailer.dataBlocks !== dataBlocks || trailer.dataBytes !== dataBytes || trailer.planeRecords !== planeRecords || trailer.mapDeltaNodes !== mapDeltaNodes || trailer.streamBytes !== at) {
          return fail('record counts do not match the trailer');
        }
        if (!(await bytes.atEnd())) return fail('unexpected bytes after the trailer');
        yield { type: 'trailer', trailer, streamBytes: bytes.offset };
        return;
      }
      hash.update(fb);
      if (records === 0) hash.update(stored); // the header payload is in the chain; later payloads through their frame's crc32
      records++;
      if (records === 2 && pendingHeader) {
        // the AUTH record: its tag covers the header (its digest is in the associated data)
        if (frame.type !== RecordType.Auth || frame.storedLength !== SEAL_TAG_BYTES || !cipher!.open(records, frame.type, frame.flags, stored)) {
          return fail('the stream header fails authentication (it was changed, or its AUTH record is missing)');
        }
        header = pendingHeader;
        pendingHeader = null;
        yield { type: 'header', header };
        continue;
      }
      if (blind) continue;
      let raw = stored;
      if (cipher && records > 1) {
        const plain = cipher.open(records, frame.type, frame.flags, stored);
        if (!plain) return fail(`record ${records} at byte ${at} fails authentication (changed, moved, or from another stream)`);
        raw = plain;
      }
      if (frame.flags & FLAG_ZSTD) {
        try {
          raw = decompressor.decompress(raw);
        } catch (err) {
          return fail(`record ${records} at byte ${at} does not decompress: ${(err as Error).message}`);
        }
        if (raw.length !== frame.rawLength) return fail(`record ${records} at byte ${at} decompresses to the wrong length`);
      }
      try {
        if (records === 1) {
          if (frame.type !== RecordType.Header) return fail('stream does not start with a header');
          header = decodeHeader(raw);
          if (encrypted) {
            if (!header.encryption) return fail('an encrypted stream whose header has no encryption fields');
            if (opts.key) {
              const key = await resolveKey(opts.key, header.encryption.scrypt !== undefined, name);
              cipher = RecordCipher.open(key, header.encryption, hash.copy().digest(), name);
              pendingHeader = header;
              continue;
            }
            if (opts.withoutKey !== 'headers') throw new AuthError(`${name}: the stream is encrypted`, 'give --key-file FILE or --passphrase-file FILE, as given to dump');
            blind = true;
          } else if (header.encryption) return fail('a header with encryption fields in a stream without the ENCRYPTED feature bit');
          else if (opts.key && opts.key.kind !== 'prompt' && !opts.key.allowUnencrypted) {
            // the key says the streams are encrypted: one that is not could be anyone's
            throw new AuthError(`${name}: the stream is not encrypted, so the key given cannot authenticate it`, 'leave out --key-file and --passphrase-file for unencrypted streams, or give --allow-unencrypted for a chain that mixes both');
          }
          yield { type: 'header', header };
          continue;
        }
        switch (frame.type) {
          case RecordType.Header:
            return fail('a second header inside the stream');
          case RecordType.Plane: {
            const p = decodePlane(raw, header!.volume.blockSize);
            if (p.snapshotIndex >= header!.snapshots.length) return fail(`PLANE record ${records} names an unknown snapshot`);
            planeRecords++;
            yield { type: 'plane', ...p };
            break;
          }
          case RecordType.Data: {
            const d = decodeData(raw, header!.volume.blockSize);
            dataBlocks += d.vbns.length;
            dataBytes += d.data.length;
            yield { type: 'data', ...d };
            break;
          }
          case RecordType.Dealloc:
            yield { type: 'dealloc', ranges: decodeDealloc(raw) };
            break;
          case RecordType.MapDelta: {
            if (!(preamble.features & FEATURE_MAPDELTA)) return fail(`MAPDELTA record ${records} in a stream that does not announce them`);
            if (header!.base === null) return fail(`MAPDELTA record ${records} in a full stream (it has no base to apply it to)`);
            const nodes = decodeMapDeltas(raw, header!.volume.blockSize);
            mapDeltaNodes += nodes.length;
            yield { type: 'mapdelta', nodes };
            break;
          }
          case RecordType.Auth:
            return fail(`AUTH record ${records} not right after the header`);
          case RecordType.Pad:
            break; // alignment for the next DATA record's blocks
          default:
            // exit 9, not 5: the frame's type byte is outside its payload's crc32, so damage
            // cannot be told from a newer writer until the chain is checked at the trailer
            if (!(frame.flags & FLAG_OPTIONAL)) return fail(`record ${records} has an unknown required type ${frame.type}`, 'damaged, or a newer imgstream wrote it');
        }
      } catch (err) {
        if (err instanceof StreamFormatError) return fail(`record ${records} at byte ${at}: ${err.message}`);
        if (err instanceof FormatVersionError) throw err.at(name);
        throw err;
      }
    }
  } finally {
    await bytes.close();
  }
}
