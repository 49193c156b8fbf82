// The sending end of a transfer's records: in order, and with compression on, each DATA
// and PLANE payload compressed with zstd on worker threads (the dump's CompressPool) while
// the next records are read, so several compress at once and the channel still gets them
// one after the other. A record travels as
//   { rec, kind, crc, length, enc: 'zstd' } + one zstd frame of the payload
// where crc and length are the raw payload's (the chain over records is the same either
// way, and a ghost stays raw); a payload zstd does not shrink goes raw, without enc.
import { CompressPool, defaultThreads, type Encoded } from '../stream/compress-pool.js';
import type { MirrorChannel } from './protocol.js';

/** zstd level of mirror records: the fastest, as dumps use by default (about 2 GB/s a core here). */
export const MIRROR_ZSTD_LEVEL = 1;

export interface OutRecord {
  msg: Record<string, unknown>;
  payload: Buffer;
  /** crc32 of the raw payload. */
  crc: number;
  /** Gives the raw payload's buffer back for reuse (once nothing reads it any more). */
  release?: (buf: Buffer) => void;
}

type Ready = { msg: Record<string, unknown>; payload: Buffer; payloadCrc: number | undefined; owned: boolean | (() => void) };

export class RecordQueue {
  private readonly pool: CompressPool | null;
  private readonly queue: Array<Promise<Ready>> = [];
  private readonly depth: number;
  /** Raw payload bytes of the records compressed, and what went on the wire for them. */
  rawBytes = 0;
  wireBytes = 0;

  constructor(private readonly ch: MirrorChannel, compress: boolean, threads = defaultThreads()) {
    this.pool = compress ? new CompressPool(MIRROR_ZSTD_LEVEL, threads) : null;
    this.depth = this.pool ? 2 * this.pool.parallel + 1 : 0;
  }

  /** Queues one record (`compress`: a DATA or PLANE payload); resolves once the queue has room. */
  async push(r: OutRecord, compress: boolean): Promise<void> {
    if (!this.pool || !compress) {
      const release = r.release;
      const owned: boolean | (() => void) = release ? () => release(r.payload) : true;
      this.queue.push(Promise.resolve({ msg: r.msg, payload: r.payload, payloadCrc: r.crc, owned }));
    } else {
      const length = r.payload.length;
      const p = this.pool.encode(r.payload).then((e: Encoded): Ready => {
        this.rawBytes += length;
        this.wireBytes += e.stored.length;
        if (!e.compressed) return { msg: r.msg, payload: e.stored, payloadCrc: e.crc, owned: r.release ? () => r.release!(e.stored) : true };
        if (e.spare && r.release) r.release(e.spare);
        return { msg: { ...r.msg, enc: 'zstd' }, payload: e.stored, payloadCrc: e.crc, owned: () => this.pool!.recycle(e) };
      });
      p.catch(() => undefined); // seen when its turn comes, or dropped with the transfer
      this.queue.push(p);
    }
    while (this.queue.length > this.depth) await this.sendHead();
  }

  private async sendHead(): Promise<void> {
    const r = await this.queue.shift()!;
    await this.ch.send(r.msg, r.payload, r.payloadCrc, r.owned);
  }

  /** Sends everything queued. */
  async flush(): Promise<void> {
    while (this.queue.length) await this.sendHead();
  }

  async close(): Promise<void> {
    this.queue.length = 0;
    await this.pool?.close();
  }
}
