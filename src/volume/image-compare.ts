// Comparing an image with what a volume's disk holds, for import: which blocks of a chunk
// changed, which became zero, which are equal. Kept free of the volume engine (it reads
// the disk through a DiskReader), so that a worker thread can compare chunks too: a
// re-import's cost is reading the image and the disk, and two threads read twice as fast.
import fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { workerScript } from '../core/worker-script.js';
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

/** The VBN each block of a chunk maps to now (0: none). */
export type Olds = number[] | Float64Array;

/** The image's blocks first..last-1 of the chunk, at the start of the buffer returned. */
export type Fetch = (first: number, last: number) => Buffer;

/** Reads VBNs vbn.. into `buf` (whole blocks). */
export interface DiskReader {
  blockSize: number;
  read(buf: Buffer, vbn: number): void;
}

/**
 * Compares one chunk of the image (n blocks, now at `olds`) with what the disk holds, a
 * segment at a time: which blocks differ. The segment's mapped blocks are read from the
 * disk packed into `scratch` (one read per run of consecutive VBNs), and runs of mapped
 * blocks compare at once; only a run that differs is looked at block by block. The
 * changed blocks' contents go to `out`, packed in the order of plan.changed (so they
 * can be written from there, a run of new VBNs at a time).
 */
export function planChunk(disk: DiskReader, olds: Olds, n: number, scratch: Buffer, fetch: Fetch, out: Buffer): ChunkPlan {
  const bs = disk.blockSize;
  const plan: ChunkPlan = { changed: [], unchanged: 0, zeroed: [] };
  const per = Math.max(1, Math.floor(SEGMENT_BYTES / bs));
  for (let first = 0; first < n; first += per) {
    const last = Math.min(n, first + per);
    const seg = fetch(first, last);
    const at = (i: number, j: number) => seg.subarray((i - first) * bs, (j - first) * bs);
    const keep = (i: number) => {
      seg.copy(out, plan.changed.length * bs, (i - first) * bs, (i - first + 1) * bs);
      plan.changed.push(i);
    };
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
          else keep(i);
        }
      } else {
        while (j < last && olds[j] !== 0) j++;
        if (at(k, j).equals(scratch.subarray(slot * bs, (slot + j - k) * bs))) plan.unchanged += j - k;
        else for (let i = k; i < j; i++) {
          const block = at(i, i + 1);
          const s = slot + i - k;
          if (block.equals(scratch.subarray(s * bs, (s + 1) * bs))) plan.unchanged++;
          else if (isZero(block)) plan.zeroed.push(i);
          else keep(i);
        }
        slot += j - k;
      }
      k = j;
    }
  }
  return plan;
}

/** Reads the mapped blocks among first..last-1 into `scratch`, packed, a read per run of consecutive VBNs. */
function readSegment(disk: DiskReader, olds: Olds, first: number, last: number, scratch: Buffer): void {
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
}

/**
 * A chunk's working memory, shared with the compare threads (so a job moves no data and
 * makes no garbage): where its blocks are on the disk now (0: nowhere), and the changed
 * blocks' contents, packed in plan.changed's order.
 */
export interface ChunkSlot {
  id: number;
  olds: Float64Array;
  out: Buffer;
}

/** Chunk slots, reused: a compare fills one, its writes go out from it, then it comes back. */
export class ChunkSlots {
  private readonly free: ChunkSlot[] = [];
  private made = 0;

  constructor(private readonly chunkBlocks: number, private readonly blockSize: number) {}

  take(): ChunkSlot {
    return (
      this.free.pop() ?? {
        id: this.made++,
        olds: new Float64Array(new SharedArrayBuffer(this.chunkBlocks * 8)),
        out: Buffer.from(new SharedArrayBuffer(this.chunkBlocks * this.blockSize)),
      }
    );
  }

  give(slot: ChunkSlot): void {
    this.free.push(slot);
  }
}

/** One chunk to compare: `bytes` of the image at `pos`, `n` blocks, in slot `slot` (its memory comes along the first time). */
export interface CompareJob {
  id: number;
  pos: number;
  bytes: number;
  n: number;
  slot: number;
  memory?: { olds: SharedArrayBuffer; out: SharedArrayBuffer };
}

export type CompareReply = { id: number; plan: ChunkPlan } | { id: number; error: { message: string; code?: string; side: 'image' | 'volume' } };

/** A worker thread comparing chunks of an image file with the disk, in the order given. */
export class CompareThread {
  private next = 0;
  private readonly waiting = new Map<number, { resolve: (r: CompareReply) => void; reject: (e: Error) => void }>();
  /** Slots whose memory the worker has. */
  private readonly known = new Set<number>();

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
    // named from dist/src, so the CLI bundle (dist/src/cli/) finds it too
    const script = workerScript(new URL('../volume/compare-worker.js', import.meta.url));
    return script ? new CompareThread(new Worker(script, { workerData: setup })) : null;
  }

  /** Compares a chunk whose olds are in `slot`; the slot is the worker's until the reply. */
  compare(pos: number, bytes: number, n: number, slot: ChunkSlot): Promise<CompareReply> {
    const job: CompareJob = { id: this.next++, pos, bytes, n, slot: slot.id };
    if (!this.known.has(slot.id)) {
      job.memory = { olds: slot.olds.buffer as SharedArrayBuffer, out: slot.out.buffer as SharedArrayBuffer };
      this.known.add(slot.id);
    }
    return new Promise((resolve, reject) => {
      this.waiting.set(job.id, { resolve, reject });
      this.worker.postMessage(job);
    });
  }

  stop(): Promise<number> {
    return this.worker.terminate();
  }
}
