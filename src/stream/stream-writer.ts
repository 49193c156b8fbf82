// Writes an image stream (format/image-stream.ts) to a medium: preamble, header, then
// records in the order given, compressed and checksummed on worker threads while the
// caller produces the next ones (order is kept), then the trailer with counts and the
// stream's SHA-256 chain. Only finish() makes the stream complete on its medium.
// With a key, every record after the header is compressed, then sealed (crypt/) in
// stream order, and an AUTH record right after the header authenticates it.
// Record buffers come from take() and return to it once written: allocating a fresh
// megabyte per record costs more than copying it.
import { createHash } from 'node:crypto';
import {
  DATA_ALIGN,
  encodeFrame,
  encodeFrameWithCrc,
  encodeHeader,
  encodePreamble,
  encodeTrailer,
  FEATURE_ENCRYPTED,
  FEATURE_MAPDELTA,
  FEATURE_ZSTD,
  FLAG_OPTIONAL,
  FLAG_SEALED,
  FLAG_ZSTD,
  padLength,
  payloadCrc,
  RecordType,
  type StreamHeader,
  type StreamTrailer,
} from '../format/image-stream.js';
import type { MediaPosition, StreamTarget } from '../media/medium.js';
import { CompressPool, type Encoded } from './compress-pool.js';
import { newStreamEncryption, RecordCipher, type KeySource } from '../crypt/index.js';

const PAD_ZEROS = Buffer.alloc(DATA_ALIGN);

interface Pending {
  type: RecordType;
  flags: number;
  rawLength: number;
  /** Sequence number of the record (the header is 1): its nonce in an encrypted stream. */
  seq: number;
  stored: Promise<Encoded>;
}

export interface WriterOptions {
  compression: StreamHeader['compression'];
  threads: number;
  /** The stream will hold MAPDELTA records (sets their feature bit). */
  mapDeltas?: boolean;
  /** Encrypt the stream with this key (sets the ENCRYPTED feature bit and header.encryption). */
  key?: KeySource | null;
}

export class ImageStreamWriter {
  private readonly hash = createHash('sha256');
  private readonly pool: CompressPool;
  private readonly features: number;
  private readonly spares: Buffer[] = [];
  /**
   * Records being encoded and written, oldest first: each is written by a chain behind the
   * caller, who goes on reading the next while the medium takes the last; each settles
   * once written (or with the first failure, after which nothing more is written).
   */
  private readonly inflight: Array<Promise<void>> = [];
  private chain: Promise<void> = Promise.resolve();
  private readonly maxPending: number;
  private bytes = 0;
  private records = 0;
  private dataBlocks = 0;
  private dataBytes = 0;
  private planeRecords = 0;
  private mapDeltaNodes = 0;
  private readonly key: KeySource | null;
  private cipher: RecordCipher | null = null;
  /** Set by abort(): records still queued are not written. */
  private aborted = false;

  constructor(private readonly target: StreamTarget, opts: WriterOptions) {
    const zstd = opts.compression.codec === 'zstd';
    this.pool = new CompressPool(zstd ? (opts.compression as { level: number }).level : null, opts.threads);
    this.key = opts.key ?? null;
    this.features = (zstd ? FEATURE_ZSTD : 0) | (opts.mapDeltas ? FEATURE_MAPDELTA : 0) | (this.key ? FEATURE_ENCRYPTED : 0);
    this.maxPending = 2 * this.pool.parallel + 2;
  }

  get bytesWritten(): number {
    return this.bytes;
  }

  /** Writes the preamble and the header (with its encryption fields added when encrypting: the header returned). */
  async start(header: StreamHeader): Promise<StreamHeader> {
    if (this.key) header = { ...header, encryption: newStreamEncryption(this.key) };
    const pre = encodePreamble(this.features);
    this.hash.update(pre);
    await this.emit(pre);
    const h = encodeHeader(header);
    const frame = encodeFrame(RecordType.Header, 0, h, h.length);
    this.hash.update(frame);
    this.hash.update(h);
    await this.emit(frame);
    await this.emit(h);
    this.records++;
    if (this.key) {
      const digest = createHash('sha256').update(pre).update(frame).update(h).digest();
      this.cipher = RecordCipher.open(this.key, header.encryption!, digest, 'new stream');
      const seq = ++this.records;
      const tag = this.cipher.seal(seq, RecordType.Auth, FLAG_SEALED, Buffer.alloc(0));
      const authFrame = encodeFrame(RecordType.Auth, FLAG_SEALED, tag, 0);
      this.hash.update(authFrame);
      await this.emit(authFrame);
      await this.emit(tag);
    }
    return header;
  }

  /** A buffer of at least `size` bytes for a record payload (give the record to plane/data/dealloc). */
  take(size: number): Buffer {
    const b = this.spares.pop();
    if (b && b.length >= size) return b.subarray(0, size);
    return Buffer.allocUnsafeSlow(size);
  }

  plane(payload: Buffer): Promise<void> {
    this.planeRecords++;
    return this.enqueue(RecordType.Plane, 0, payload);
  }

  data(payload: Buffer, blocks: number, blockBytes: number): Promise<void> {
    this.dataBlocks += blocks;
    this.dataBytes += blockBytes;
    return this.enqueue(RecordType.Data, 0, payload);
  }

  /** A MAPDELTA record of `nodes` map blocks (the writer must have been made with mapDeltas). */
  mapDeltas(payload: Buffer, nodes: number): Promise<void> {
    if (!(this.features & FEATURE_MAPDELTA)) throw new Error('MAPDELTA record in a stream without its feature bit');
    this.mapDeltaNodes += nodes;
    return this.enqueue(RecordType.MapDelta, 0, payload);
  }

  dealloc(payload: Buffer): Promise<void> {
    return this.enqueue(RecordType.Dealloc, FLAG_OPTIONAL, payload);
  }

  private async enqueue(type: RecordType, flags: number, raw: Buffer): Promise<void> {
    const seq = ++this.records;
    const seal = this.cipher ? this.cipher.job(seq, type, flags | FLAG_SEALED) : null;
    const p: Pending = { type, flags, rawLength: raw.length, seq, stored: this.pool.encode(raw, seal) };
    p.stored.catch(() => undefined); // awaited by the chain, unless a write failed before
    const written = this.chain.then(() => this.writeRecord(p));
    written.catch(() => undefined); // awaited below, by finish() or by abort()
    this.chain = written;
    this.inflight.push(written);
    while (this.inflight.length > this.maxPending) await this.inflight.shift();
  }

  private async writeRecord(p: Pending): Promise<void> {
    const encoded = await p.stored;
    const { stored, compressed, crc, spare, sealed, tag } = encoded;
    // compressed, then sealed (by the pool); no PAD when sealed: restore decrypts into new buffers
    const flags = (compressed ? p.flags | FLAG_ZSTD : p.flags) | (sealed ? FLAG_SEALED : 0);
    if (p.type === RecordType.Data && !compressed && !sealed) await this.pad(8 + 8 * stored.readUInt32LE(0));
    const frame = encodeFrameWithCrc(p.type, flags, stored.length + (tag?.length ?? 0), p.rawLength, crc);
    // the chain: every frame (which holds its payload's crc32) in order
    this.hash.update(frame);
    await this.emit(frame);
    await this.emit(stored);
    if (tag) await this.emit(tag);
    this.pool.recycle(encoded);
    if (spare && spare.buffer.byteLength >= (1 << 16) && this.spares.length < this.maxPending + 2) this.spares.push(Buffer.from(spare.buffer));
  }

  /**
   * A PAD record, when needed, so the blocks of the DATA record that follows (at
   * `dataOffset` in its payload) start at a multiple of DATA_ALIGN in the stream: a
   * restore from a file then writes them with direct I/O straight from its read buffers.
   */
  private async pad(dataOffset: number): Promise<void> {
    const length = padLength(this.bytes, dataOffset);
    if (length === null) return;
    const payload = PAD_ZEROS.subarray(0, length);
    const frame = encodeFrameWithCrc(RecordType.Pad, FLAG_OPTIONAL, length, length, payloadCrc(payload));
    this.hash.update(frame);
    this.records++;
    await this.emit(frame);
    if (length > 0) await this.emit(payload);
  }

  private async emit(buf: Buffer): Promise<void> {
    if (this.aborted) throw new Error('the stream was abandoned');
    this.bytes += buf.length;
    await this.target.write(buf);
  }

  /** Writes the trailer and completes the stream on its medium. */
  async finish(): Promise<{ trailer: StreamTrailer; position: MediaPosition; streamBytes: number }> {
    while (this.inflight.length) await this.inflight.shift();
    const trailer: StreamTrailer = {
      records: this.records,
      dataBlocks: this.dataBlocks,
      dataBytes: this.dataBytes,
      planeRecords: this.planeRecords,
      streamBytes: this.bytes,
      sha256: this.hash.digest('hex'),
      mapDeltaNodes: this.mapDeltaNodes,
    };
    let t = encodeTrailer(trailer);
    let flags = 0;
    if (this.cipher) {
      // in clear, authenticated: the tag of an empty plaintext with the trailer in its associated data
      flags = FLAG_SEALED;
      t = Buffer.concat([t, this.cipher.seal(this.records + 1, RecordType.Trailer, flags, Buffer.alloc(0), t)]);
    }
    await this.target.write(encodeFrame(RecordType.Trailer, flags, t, t.length - (this.cipher ? 16 : 0)));
    await this.target.write(t);
    const streamBytes = this.bytes + 16 + t.length;
    await this.pool.close();
    const position = await this.target.finish();
    return { trailer, position, streamBytes };
  }

  /**
   * Abandons the stream: nothing more is written, and the medium discards what was. With
   * `waitMs`, a write the medium has not taken by then (a pipe nobody reads) is not
   * waited for any longer.
   */
  async abort(opts: { waitMs?: number } = {}): Promise<string | void> {
    this.aborted = true;
    const settled = Promise.allSettled(this.inflight.splice(0)); // nothing of ours is still being written
    if (opts.waitMs === undefined) await settled;
    else {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([settled, new Promise((resolve) => (timer = setTimeout(resolve, opts.waitMs)))]);
      clearTimeout(timer);
    }
    await this.pool.close();
    return this.target.abort(); // what it could not remove, for the error
  }
}
