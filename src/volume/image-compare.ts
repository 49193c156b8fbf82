// Comparing an image with what a volume's disk holds, for import: which blocks of a chunk
// changed, which became zero, which are equal. Kept free of the volume engine (it reads
// the disk through a DiskReader), so that a worker thread can compare chunks too: a
// re-import's cost is reading the image and the disk, and two threads read twice as fast.
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { workerScript } from '../worker-script.js';
import { isZero } from './zero.js';

export interface ChunkPlan {
  changed: number[];
  unchanged: number;
  zeroed: number[];
}

/**
 * Bytes compared at once: the image's segment and the disk's blocks for it are read just
 * before, so both are still in the processor's cache (it pays: 8 MiB reads run at half
 * the speed of 64 KiB ones, whose copy stays in cache), and most of a re-import is equal.
 */
export const SEGMENT_BYTES = 64 << 10;

/** One chunk of the image, and where its blocks are on the disk now. */
export interface Frame {
  /** The image's bytes, padded with zeros to whole blocks (after planChunk: the blocks that differ, at their place). */
  data: Buffer;
  /** The VBN each block maps to now (0: none). */
  olds: number[] | Float64Array;
}

/** The image's blocks first..last-1 of the chunk, at the start of the buffer returned. */
export type Fetch = (first: number, last: number) => Buffer;

/** Reads VBNs vbn.. into `buf` (whole blocks). */
export interface DiskReader {
  blockSize: number;
  read(buf: Buffer, vbn: number): void;
}

/**
 * Compares one chunk of the image with what the disk holds, a segment at a time: which
 * blocks differ. The segment's mapped blocks are read from the disk packed into
 * `scratch` (one read per run of consecutive VBNs), and runs of mapped blocks compare at
 * once; only a run that differs is looked at block by block. Blocks that differ end up
 * in the frame's data, at their place.
 */
export function planChunk(disk: DiskReader, f: Frame, n: number, scratch: Buffer, fetch: Fetch): ChunkPlan {
  const bs = disk.blockSize;
  const { data, olds } = f;
  const plan: ChunkPlan = { changed: [], unchanged: 0, zeroed: [] };
  const per = Math.max(1, Math.floor(SEGMENT_BYTES / bs));
  for (let first = 0; first < n; first += per) {
    const last = Math.min(n, first + per);
    const seg = fetch(first, last);
    const keep = (i: number, into: number[]) => {
      into.push(i);
      if (seg !== data) seg.copy(data, i * bs, (i - first) * bs, (i - first + 1) * bs);
    };
    const at = (i: number, j: number) => seg.subarray((i - first) * bs, (j - first) * bs);
    readSegment(disk, olds, first, last, scratch);
    let slot = 0; // where the next mapped block is in scratch
    let k = first;
    while (k < last) {
      let j = k + 1;
      if (olds[k] === 0) {
        // not mapped: unchanged when the image has zeros there
        while (j < last && olds[j] === 0) j++;
        if (isZero(at(k, j))) plan.unchanged += j - k;
        else for (let i = k; i < j; i++) {
          if (isZero(at(i, i + 1))) plan.unchanged++;
          else keep(i, plan.changed);
        }
      } else {
        while (j < last && olds[j] !== 0) j++;
        if (at(k, j).equals(scratch.subarray(slot * bs, (slot + j - k) * bs))) plan.unchanged += j - k;
        else for (let i = k; i < j; i++) {
          const block = at(i, i + 1);
          const s = slot + i - k;
          if (block.equals(scratch.subarray(s * bs, (s + 1) * bs))) plan.unchanged++;
          else keep(i, isZero(block) ? plan.zeroed : plan.changed);
        }
        slot += j - k;
      }
      k = j;
    }
  }
  return plan;
}

/** Reads the mapped blocks among first..last-1 into `scratch`, packed, a read per run of consecutive VBNs. */
function readSegment(disk: DiskReader, olds: Frame["olds"], first: number, last: number, scratch: Buffer): void {
  const bs = disk.blockSize;
  let slot = 0;
  let runVbn = 0;
  let runSlot = 0;
  const flush = () => {
    if (slot > runSlot) disk.read(scratch.subarray(runSlot * bs, slot * bs), runVbn);
  };
  for (let k = first; k < last; k++) {
    const v = olds[k];
    if (v === 0) continue;
    if (slot === runSlot || v !== runVbn + (slot - runSlot)) {
      flush();
      runVbn = v;
      runSlot = slot;
    }
    slot++;
  }
  flush();
}

/** Reads up to buf.length bytes at `position`: fewer only at the end of the file. */
export function preadFully(fd: number, buf: Uint8Array, position: number): number {
  let done = 0;
  while (done < buf.length) {
    const n = fs.readSync(fd, buf, done, buf.length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return done;
}

/**
 * Fetches a chunk's segments from an image file at `pos` (the chunk holds `bytes` of
 * it) into `seg`, a buffer reused for every segment, which stays in cache.
 */
export function fileFetch(read: (position: number, buf: Buffer) => number, seg: Buffer, bs: number, pos: number, bytes: number): Fetch {
  return (first, last) => {
    const from = first * bs;
    const got = read(pos + from, seg.subarray(0, Math.min(last * bs, bytes) - from));
    seg.fill(0, got, (last - first) * bs); // the end of the image, or one that shrank
    return seg;
  };
}

/** What a compare worker is given once: the files' descriptors and the volume's geometry. */
export interface CompareSetup {
  imageFd: number;
  volumeFd: number;
  blockSize: number;
  /** File block of VBN 0. */
  dataStart: number;
  chunkBytes: number;
}

/** One chunk to compare: `bytes` of the image at `pos`, `n` blocks, mapped to `olds`. */
export interface CompareJob {
  id: number;
  pos: number;
  bytes: number;
  n: number;
  olds: Float64Array;
}

export type CompareReply =
  | { id: number; plan: ChunkPlan; /** The changed blocks' contents, in plan.changed's order. */ blocks: ArrayBuffer }
  | { id: number; error: { message: string; code?: string; side: 'image' | 'volume' } };

/** A worker thread comparing chunks of an image file with the disk, in the order given. */
export class CompareThread {
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (r: CompareReply) => void; reject: (e: Error) => void }>();

  private constructor(private readonly worker: Worker) {
    worker.on('message', (r: CompareReply) => {
      const w = this.waiting.get(r.id);
      this.waiting.delete(r.id);
      w?.resolve(r);
    });
    worker.on('error', (err) => {
      for (const w of this.waiting.values()) w.reject(err);
      this.waiting.clear();
    });
  }

  /** A thread, or null when the worker script is not built (the caller compares alone). */
  static start(setup: CompareSetup): CompareThread | null {
    const script = workerScript(new URL('./compare-worker.js', import.meta.url));
    return script ? new CompareThread(new Worker(script, { workerData: setup })) : null;
  }

  compare(pos: number, bytes: number, n: number, olds: ArrayLike<number>): Promise<CompareReply> {
    const job: CompareJob = { id: this.next++, pos, bytes, n, olds: Float64Array.from({ length: n }, (_, k) => olds[k]) };
    return new Promise((resolve, reject) => {
      this.waiting.set(job.id, { resolve, reject });
      this.worker.postMessage(job, [job.olds.buffer as ArrayBuffer]);
    });
  }

  stop(): Promise<number> {
    return this.worker.terminate();
  }
}
