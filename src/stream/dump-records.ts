// The records a dump writes after its header: the planes of the snapshots it carries, the
// map blocks it sends as differences from its base's, and the blocks of its storage image
// in the order asked for (dump.ts runs them).
import { encodeMapDeltas, encodePlane, type MapDelta } from '../format/image-stream.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { forEachExtent, imageChunkReader, imageChunks, parseExpression, resolveExpression, type PlaneSource, type ResolvedExpression } from '../image/index.js';
import type { Volume } from '../volume/volume.js';
import { allZero } from '../volume/plane-edit.js';
import type { CarriedBlocks } from '../volume/map-deltas.js';
import { SparseBitmap } from '../volume/sparse-bitmap.js';
import { ImageStreamWriter } from './stream-writer.js';
import { DataRecordBuilder } from './data-record.js';
import type { StreamOrder } from './order.js';
import { sourcePacer } from './source-rate.js';
import { throwIfStopped } from './interruption.js';

/** Records are about this large. */
const RECORD_BYTES = 1 << 20;

/** Every non-zero plane block of every snapshot carried, grouped into records of about 1 MiB. */
export async function writePlanes(vol: Volume, writer: ImageStreamWriter, snapshots: SnapshotEntry[], signal?: AbortSignal): Promise<void> {
  const bs = vol.blockSize;
  const per = Math.max(1, Math.floor(RECORD_BYTES / bs));
  for (let i = 0; i < snapshots.length; i++) {
    const plane = vol.layout.snapshotPlane(snapshots[i].slot);
    let chunks: number[] = [];
    let words: Uint8Array[] = [];
    for (let c = 0; c < vol.layout.planeBlocks; c++) {
      const w = vol.planeWords(plane, c);
      if (vol.isZeroWords(w) || allZero(w)) continue;
      chunks.push(c);
      words.push(Buffer.from(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)));
      if (chunks.length === per) {
        throwIfStopped(signal);
        await writer.plane(encodePlane(i, chunks, words, bs));
        chunks = [];
        words = [];
      }
    }
    if (chunks.length) await writer.plane(encodePlane(i, chunks, words, bs));
  }
}

/** Membership in a storage image, evaluated a chunk at a time as VBNs are asked about. */
export function imageMembers(vol: Volume, expression: string): CarriedBlocks {
  const source: PlaneSource = vol.planeSource();
  const resolved: ResolvedExpression = resolveExpression(parseExpression(expression), source);
  const bits = source.wordsPerChunk * 32;
  const read = imageChunkReader(resolved, source);
  const cache = new Map<number, Uint32Array | null>();
  return {
    has(vbn: number): boolean {
      const c = Math.floor(vbn / bits);
      let words = cache.get(c);
      if (words === undefined) {
        if (cache.size >= 256) cache.clear(); // bounded: a map walk touches few chunks at a time
        words = read(c)?.slice() ?? null;
        cache.set(c, words);
      }
      const b = vbn % bits;
      return words !== null && (words[b >>> 5] & (1 << (b & 31))) !== 0;
    },
  };
}

/** MAPDELTA records of about 1 MiB; returns the bytes of the blocks they stand for. */
export async function writeMapDeltas(vol: Volume, writer: ImageStreamWriter, deltas: MapDelta[]): Promise<number> {
  let k = 0;
  while (k < deltas.length) {
    const group: MapDelta[] = [];
    let bytes = 8;
    while (k < deltas.length && (group.length === 0 || bytes + 20 + deltas[k].slots.length * 12 <= RECORD_BYTES)) {
      bytes += 20 + deltas[k].slots.length * 12;
      group.push(deltas[k++]);
    }
    await writer.mapDeltas(encodeMapDeltas(group), group.length);
  }
  return deltas.length * vol.blockSize;
}

/**
 * The image's blocks in the chosen order, in DATA records of about 1 MiB: blocks are read
 * in runs of consecutive VBNs straight into the record (laid out as the format says:
 * count, VBNs, contents), which is only compacted when it ends up short.
 */
export async function writeBlocks(vol: Volume, writer: ImageStreamWriter, expression: string, order: StreamOrder, excluded: SparseBitmap, onBytes: (n: number) => void, signal?: AbortSignal): Promise<void> {
  const source = vol.planeSource();
  const resolved = resolveExpression(parseExpression(expression), source);
  const bitsPerChunk = source.wordsPerChunk * 32;
  const rec = new DataRecordBuilder(vol, RECORD_BYTES, (size) => writer.take(size));
  const per = rec.per;
  let done = 0;
  const pace = sourcePacer();
  const flush = async () => {
    throwIfStopped(signal);
    const r = rec.finish();
    if (!r) return;
    await writer.data(r.payload, r.blocks, r.blocks * vol.blockSize);
    done += r.blocks * vol.blockSize;
    onBytes(done);
    await pace?.(done);
  };
  // each stripe walks its share of the VBN space; stripes take turns one record at a time
  const stripes = order.stripes(source.chunks).map(([from, to]) => extentsOf(imageChunks(resolved, source, { fromChunk: from, toChunk: to }), bitsPerChunk, excluded));
  let live = stripes.length;
  while (live > 0) {
    live = 0;
    for (const s of stripes) {
      let taken = 0;
      while (taken < per) {
        const ext = s.next(Math.min(per - taken, rec.room));
        if (!ext) break;
        const [first, count] = ext;
        rec.add(first, count);
        taken += count;
        if (rec.room === 0) await flush();
      }
      if (taken > 0) live++;
      if (stripes.length > 1) await flush();
    }
  }
  await flush();
}

/** Extents of an image walk less the excluded VBNs, handed out in pieces of at most `max` blocks. */
function extentsOf(chunks: Generator<{ chunk: number; words: Uint32Array }>, bitsPerChunk: number, excluded: SparseBitmap) {
  const queue: Array<[number, number]> = [];
  let ended = false;
  return {
    next(max: number): [number, number] | null {
      while (queue.length === 0 && !ended) {
        const r = chunks.next();
        if (r.done) ended = true;
        else {
          let words = r.value.words;
          const out = excluded.chunk(r.value.chunk);
          if (out) {
            words = words.slice();
            for (let w = 0; w < words.length; w++) words[w] &= ~out[w];
          }
          forEachExtent(words, r.value.chunk * bitsPerChunk, (first, count) => queue.push([first, count]));
        }
      }
      const head = queue[0];
      if (!head) return null;
      if (head[1] <= max) return queue.shift()!;
      const piece: [number, number] = [head[0], max];
      queue[0] = [head[0] + max, head[1] - max];
      return piece;
    },
  };
}
