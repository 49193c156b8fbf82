// Writes an image stream (format/image-stream.ts) to a medium: preamble, header, then
// records in the order given, compressed on worker threads while the caller produces the
// next ones (order is kept), then the trailer with counts and the SHA-256 of everything
// before it. Only finish() makes the stream complete on its medium.
import { createHash } from 'node:crypto';
import {
  encodeFrame,
  encodeHeader,
  encodePreamble,
  encodeTrailer,
  FEATURE_ZSTD,
  FLAG_OPTIONAL,
  FLAG_ZSTD,
  RecordType,
  type StreamHeader,
  type StreamTrailer,
} from '../format/image-stream.js';
import type { MediaPosition, StreamTarget } from '../media/medium.js';
import { CompressPool, type Compressed } from './compress-pool.js';

interface Pending {
  type: RecordType;
  flags: number;
  rawLength: number;
  stored: Promise<Compressed>;
}

export interface WriterOptions {
  compression: StreamHeader['compression'];
  threads: number;
}

export class ImageStreamWriter {
  private readonly hash = createHash('sha256');
  private readonly pool: CompressPool | null;
  private readonly pending: Pending[] = [];
  private readonly maxPending: number;
  private bytes = 0;
  private records = 0;
  private dataBlocks = 0;
  private dataBytes = 0;
  private planeRecords = 0;

  constructor(private readonly target: StreamTarget, opts: WriterOptions) {
    this.pool = opts.compression.codec === 'zstd' ? new CompressPool(opts.compression.level, opts.threads) : null;
    this.maxPending = 2 * (this.pool?.parallel ?? 1) + 2;
  }

  get bytesWritten(): number {
    return this.bytes;
  }

  async start(header: StreamHeader): Promise<void> {
    await this.emit(encodePreamble(this.pool ? FEATURE_ZSTD : 0));
    const h = encodeHeader(header);
    await this.emit(encodeFrame(RecordType.Header, 0, h, h.length));
    await this.emit(h);
    this.records++;
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

  dealloc(payload: Buffer): Promise<void> {
    return this.enqueue(RecordType.Dealloc, FLAG_OPTIONAL, payload);
  }

  private async enqueue(type: RecordType, flags: number, raw: Buffer): Promise<void> {
    const rawLength = raw.length;
    const stored = this.pool ? this.pool.compress(raw) : Promise.resolve({ stored: raw, compressed: false });
    this.pending.push({ type, flags, rawLength, stored });
    this.records++;
    while (this.pending.length > this.maxPending) await this.drainOne();
  }

  private async drainOne(): Promise<void> {
    const p = this.pending.shift()!;
    const { stored, compressed } = await p.stored;
    const flags = compressed ? p.flags | FLAG_ZSTD : p.flags;
    await this.emit(encodeFrame(p.type, flags, stored, p.rawLength));
    await this.emit(stored);
  }

  private async emit(buf: Buffer): Promise<void> {
    this.hash.update(buf);
    this.bytes += buf.length;
    await this.target.write(buf);
  }

  /** Writes the trailer and completes the stream on its medium. */
  async finish(): Promise<{ trailer: StreamTrailer; position: MediaPosition; streamBytes: number }> {
    while (this.pending.length) await this.drainOne();
    const trailer: StreamTrailer = {
      records: this.records,
      dataBlocks: this.dataBlocks,
      dataBytes: this.dataBytes,
      planeRecords: this.planeRecords,
      streamBytes: this.bytes,
      sha256: this.hash.digest('hex'),
    };
    const t = encodeTrailer(trailer);
    await this.target.write(encodeFrame(RecordType.Trailer, 0, t, t.length));
    await this.target.write(t);
    const streamBytes = this.bytes + 16 + t.length;
    await this.pool?.close();
    const position = await this.target.finish();
    return { trailer, position, streamBytes };
  }

  async abort(): Promise<void> {
    await Promise.allSettled(this.pending.map((p) => p.stored));
    this.pending.length = 0;
    await this.pool?.close();
    await this.target.abort();
  }
}
