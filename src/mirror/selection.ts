// The blocks a mirror transfer carries (sender.ts), chunk by chunk (one plane block's
// worth of VBNs at a time): the new state's planes, narrowed by the mode (the shipped
// mark-on-allocate plane, or minus the planes both sides hold), without the map nodes
// that travel as deltas; and their DATA payloads, read straight from the volume.
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { forEachExtent, popcount32 } from '../image/index.js';
import { DataRecordBuilder } from '../stream/data-record.js';
import { PLANE_MOA } from '../volume/layout.js';
import { SparseBitmap } from '../volume/sparse-bitmap.js';
import type { Volume } from '../volume/volume.js';
import type { TransferMode } from './protocol.js';

/** About this much per record payload. */
export const RECORD_BYTES = 1 << 20;

/** The blocks a transfer carries, chunk by chunk (one plane block's worth of VBNs at a time). */
export class Selection {
  private readonly newPlanes: number[];
  private readonly keepPlanes: number[];
  private readonly shipping: number;
  constructor(private readonly vol: Volume, newState: SnapshotEntry[], keep: SnapshotEntry[], private readonly mode: TransferMode) {
    this.newPlanes = newState.map((s) => vol.layout.snapshotPlane(s.slot));
    this.keepPlanes = keep.map((s) => vol.layout.snapshotPlane(s.slot));
    this.shipping = PLANE_MOA[vol.rootRecord.moaCurrent ^ 1];
    this.excluded = new SparseBitmap(vol.layout.wordsPerPlaneBlock);
    this.cached = new Uint32Array(vol.layout.wordsPerPlaneBlock);
  }

  private readonly excluded: SparseBitmap;
  private cachedChunk = -1;
  private readonly cached: Uint32Array;

  /** Leaves a VBN out of the DATA records (a map node sent as a delta). */
  exclude(vbn: number): void {
    this.excluded.add(vbn);
    this.cachedChunk = -1;
  }

  /** True when the transfer carries this VBN. */
  has(vbn: number): boolean {
    const bits = this.vol.layout.bitsPerPlaneBlock;
    const c = Math.floor(vbn / bits);
    if (c !== this.cachedChunk) {
      this.chunk(c, this.cached);
      this.cachedChunk = c;
    }
    const b = vbn % bits;
    return (this.cached[b >>> 5] & (1 << (b & 31))) !== 0;
  }

  /** The chunk's VBNs into `out`; false when none (most chunks of a sparse volume: its planes' blocks of zeros are skipped unread). */
  private chunk(c: number, out: Uint32Array): boolean {
    const zero = (w: Uint32Array) => this.vol.isZeroWords(w);
    let any = false;
    if (this.mode === 'moa') {
      const w = this.vol.planeWords(this.shipping, c);
      if (zero(w)) return (out.fill(0), false);
    }
    for (const p of this.newPlanes) {
      const w = this.vol.planeWords(p, c);
      if (zero(w)) continue;
      if (!any) out.set(w);
      else for (let i = 0; i < out.length; i++) out[i] |= w[i];
      any = true;
    }
    if (!any) return (out.fill(0), false);
    if (this.mode === 'moa') {
      const w = this.vol.planeWords(this.shipping, c);
      for (let i = 0; i < out.length; i++) out[i] &= w[i];
    } else if (this.mode === 'common') {
      for (const p of this.keepPlanes) {
        const w = this.vol.planeWords(p, c);
        if (zero(w)) continue;
        for (let i = 0; i < out.length; i++) out[i] &= ~w[i];
      }
    }
    const x = this.excluded.chunk(c);
    if (x) for (let i = 0; i < out.length; i++) out[i] &= ~x[i];
    if (c === 0) out[0] &= ~1;
    return true;
  }

  count(): number {
    const out = new Uint32Array(this.vol.layout.wordsPerPlaneBlock);
    let n = 0;
    for (let c = 0; c < this.vol.layout.planeBlocks; c++) {
      if (!this.chunk(c, out)) continue;
      for (let i = 0; i < out.length; i++) if (out[i] !== 0) n += popcount32(out[i]);
    }
    return n;
  }

  /**
   * DATA payloads of about 1 MiB in VBN order, read in runs of consecutive VBNs straight
   * into the payload (laid out as the format says: count, VBNs, contents), which is only
   * compacted when it ends up short. The channel may hold a payload until the socket took
   * it; full-size buffers it gives back (`release`) are used again, so a transfer reads
   * into memory already mapped and in cache instead of allocating 1 MiB per record (that
   * cost more than the reads themselves).
   */
  async records(emit: (payload: Buffer, blocks: number, release: (buf: Buffer) => void) => Promise<void>): Promise<void> {
    const vol = this.vol;
    const bits = vol.layout.bitsPerPlaneBlock;
    const out = new Uint32Array(vol.layout.wordsPerPlaneBlock);
    const spares: Buffer[] = [];
    let full = 0;
    const rec = new DataRecordBuilder(vol, RECORD_BYTES, (size) => (size === full && spares.length > 0 ? spares.pop()! : Buffer.allocUnsafeSlow(size)));
    full = rec.bytes;
    const flush = async () => {
      const r = rec.finish();
      if (r) await emit(r.payload, r.blocks, (buf) => void (buf.length === full && spares.length < MAX_SPARES && spares.push(buf)));
    };
    for (let c = 0; c < vol.layout.planeBlocks; c++) {
      if (!this.chunk(c, out)) continue;
      const extents: Array<[number, number]> = [];
      forEachExtent(out, c * bits, (first, count) => extents.push([first, count]));
      for (let [first, count] of extents) {
        while (count > 0) {
          const take = Math.min(count, rec.room);
          rec.add(first, take);
          first += take;
          count -= take;
          if (rec.room === 0) await flush();
        }
      }
    }
    await flush();
  }
}

/** Payload buffers kept for reuse: what the channel's send window holds, and a few more. */
const MAX_SPARES = 16;

