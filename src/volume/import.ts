// Import: make the logical disk equal to a raw image (followed by zeros up to the disk
// size), writing only the blocks whose content changed, in one CP at the end: a kill at
// any moment leaves the previous CP, never a mix. Zero blocks are unmapped (thin).
import { punchHoles } from '../fs/punch-hole.js';
import os from 'node:os';
import { InvalidInputError, VolumeFullError, fromSystemError } from '../core/errors.js';
import { BlockSet } from '../core/block-set.js';
import { noProgress, type Progress } from '../core/progress.js';
import { ChunkSlots, CompareThread, fileFetch, planChunk, SEGMENT_BYTES, type ChunkPlan, type ChunkSlot, type CompareReply, type DiskReader, type Olds } from './image-compare.js';
import type { Volume } from './volume.js';
import { WriteBehind } from './write-behind.js';

export interface ImageSource {
  /** A fresh stream of the image's bytes. */
  open(): AsyncIterable<Uint8Array>;
  /** Length in bytes when known in advance (files, devices); undefined for pipes. */
  size?: number;
  /** True when open() may be called twice (a file): allows a dry pre-pass when space is tight. */
  rereadable: boolean;
  /**
   * Reads at positions (regular files): an import reads the image a segment at a time as
   * it compares, and a tight one fetches just the changed blocks after its dry pass.
   */
  openReader?(): ImageReader;
  name: string;
}

export interface ImageReader {
  /** The open file's descriptor (a compare thread reads it too). */
  fd: number;
  /** Reads into `buf` at `position`: buf.length bytes, fewer only at the end of the image. */
  read(position: number, buf: Buffer): number;
  close(): void;
}

export interface ImportResult {
  bytes: number;
  blocks: number;
  changedBlocks: number;
  unchangedBlocks: number;
  unmappedBlocks: number;
  generation: number;
}

const CHUNK_BYTES = 8 << 20;

/** Re-blocks a byte stream into chunks of exactly `size` bytes (the last one shorter). */
async function* rechunk(src: AsyncIterable<Uint8Array>, size: number): AsyncGenerator<Buffer> {
  let buf = Buffer.allocUnsafe(size);
  let fill = 0;
  for await (const piece of src) {
    let off = 0;
    // whole chunks straight from the source's buffer: the consumer is done with each
    // chunk before it asks for the next, so no copy is needed
    while (fill === 0 && piece.length - off >= size) {
      yield Buffer.from(piece.buffer, piece.byteOffset + off, size);
      off += size;
    }
    while (off < piece.length) {
      const n = Math.min(size - fill, piece.length - off);
      buf.set(piece.subarray(off, off + n), fill);
      fill += n;
      off += n;
      if (fill === size) {
        yield buf;
        buf = Buffer.allocUnsafe(size);
        fill = 0;
      }
    }
  }
  if (fill > 0) yield buf.subarray(0, fill);
}

function lookUp(vol: Volume, olds: Olds, lbn: number, n: number): void {
  for (let k = 0; k < n; k++) olds[k] = vol.map.lookup(lbn + k);
}

/** A chunk of the image compared with the disk. */
interface Compared {
  lbn: number;
  /** Blocks in the chunk. */
  n: number;
  /** Image bytes in the chunk (the last one may end inside a block). */
  bytes: number;
  plan: ChunkPlan;
  /** Where the chunk's blocks are now, and the changed blocks' contents: the consumer's, to give back to the slots. */
  slot: ChunkSlot;
}

/** Chunks below which compare threads do not pay for their start. */
const THREAD_CHUNKS = 8;
/** Chunks given to a compare thread at once. */
const JOBS_PER_THREAD = 2;
/** Compare threads besides this one: one per other core (a third thread on 2 cores measured no gain). */
const COMPARE_THREADS = Math.max(1, Math.min(3, os.availableParallelism() - 1));

/**
 * The image chunk by chunk, each compared with what the disk holds. A stream (a pipe, a
 * device) is compared a chunk at a time as it comes. A file is read a segment at a time
 * as the comparison goes, and a large one by this thread and compare workers together: a
 * worker compares the chunks given to it while this thread compares others, whichever is
 * free taking the next. Chunks come out of order; a worker's are looked up here before
 * later ones are written, which is safe: an import never writes over a block the last CP
 * holds.
 */
async function* comparedChunks(vol: Volume, source: ImageSource, chunkBytes: number, slots: ChunkSlots, threads = COMPARE_THREADS): AsyncGenerator<Compared> {
  const bs = vol.blockSize;
  const chunkBlocks = chunkBytes / bs;
  const scratch = Buffer.allocUnsafeSlow(Math.max(bs, SEGMENT_BYTES));
  const disk: DiskReader = { blockSize: bs, read: (buf, vbn) => vol.file.read(buf, vol.layout.vbnOffset(vbn)) };
  const size = source.size;
  if (!source.openReader || size === undefined) {
    for await (const { lbn, data, bytes } of paddedChunks(source.open(), chunkBytes, bs, vol.rootRecord.logicalSize, source.name)) {
      const n = data.length / bs;
      const slot = slots.take();
      lookUp(vol, slot.olds, lbn, n);
      yield { lbn, n, bytes, slot, plan: planChunk(disk, slot.olds, n, scratch, (first, last) => data.subarray(first * bs, last * bs), slot.out) };
    }
    return;
  }
  const reader = source.openReader();
  const seg = Buffer.allocUnsafeSlow(Math.max(bs, SEGMENT_BYTES));
  const chunks = Math.ceil(size / chunkBytes);
  const chunk = (c: number) => {
    const pos = c * chunkBytes;
    const bytes = Math.min(chunkBytes, size - pos);
    return { pos, bytes, lbn: c * chunkBlocks, n: Math.ceil(bytes / bs) };
  };
  // compare threads, each with the chunks given to it (two, so it never waits for this
  // thread to hand out the next): whichever is free takes the next chunk
  type Job = { c: number; slot: ChunkSlot; done: boolean; reply: Promise<CompareReply> };
  type Lane = { thread: CompareThread; jobs: Job[] };
  const lanes: Lane[] = [];
  if (chunks >= THREAD_CHUNKS && !vol.file.overlaid) {
    for (let t = 0; t < threads; t++) {
      const thread = CompareThread.start({ imageFd: reader.fd, volumeFd: vol.file.fd, blockSize: bs, dataStart: vol.layout.dataStart });
      if (thread) lanes.push({ thread, jobs: [] });
    }
  }
  let next = 0;
  const give = (lane: Lane) => {
    while (next < chunks && lane.jobs.length < JOBS_PER_THREAD) {
      const c = next++;
      const { pos, bytes, lbn, n } = chunk(c);
      const slot = slots.take();
      lookUp(vol, slot.olds, lbn, n);
      const job: Job = { c, slot, done: false, reply: lane.thread.compare(pos, bytes, n, slot) };
      job.reply.then(() => (job.done = true), () => (job.done = true));
      lane.jobs.push(job);
    }
  };
  const busy = () => lanes.some((l) => l.jobs.length > 0);
  try {
    for (const lane of lanes) give(lane);
    while (next < chunks || busy()) {
      if (busy()) await new Promise(setImmediate); // lets the threads' answers in
      // a thread's chunk done (or, with nothing left for this thread, the first one given)
      const lane = lanes.find((l) => l.jobs[0]?.done) ?? (next >= chunks ? lanes.find((l) => l.jobs.length > 0) : undefined);
      if (lane) {
        const job = lane.jobs.shift()!;
        const reply = await job.reply;
        if ('error' in reply) throw compareError(reply.error, reply.error.side === 'image' ? source.name : vol.path);
        const { bytes, lbn, n } = chunk(job.c);
        yield { lbn, n, bytes, slot: job.slot, plan: reply.plan };
        give(lane);
        continue;
      }
      const { pos, bytes, lbn, n } = chunk(next++);
      const slot = slots.take();
      lookUp(vol, slot.olds, lbn, n);
      yield { lbn, n, bytes, slot, plan: planChunk(disk, slot.olds, n, scratch, fileFetch((p, b) => reader.read(p, b), seg, bs, pos, bytes), slot.out) };
    }
  } finally {
    for (const lane of lanes) {
      for (const job of lane.jobs) await job.reply.catch(() => undefined);
      await lane.thread.stop();
    }
    reader.close();
  }
}

/** A worker's failed read, as this thread would have reported it. */
function compareError(e: { message: string; code?: string }, file: string): Error {
  return fromSystemError(Object.assign(new Error(e.message), { code: e.code }), file, 'reading');
}

async function* paddedChunks(source: AsyncIterable<Uint8Array>, chunkBytes: number, bs: number, logicalSize: number, name: string): AsyncGenerator<{ lbn: number; data: Buffer; bytes: number }> {
  let lbn = 0;
  let total = 0;
  for await (const piece of rechunk(source, chunkBytes)) {
    total += piece.length;
    if (total > logicalSize) throw new InvalidInputError(`${name}: image is larger than the logical disk (${logicalSize} bytes)`, 'create a volume with a larger --size');
    let data = piece;
    if (piece.length % bs !== 0) {
      data = Buffer.alloc(Math.ceil(piece.length / bs) * bs);
      piece.copy(data);
    }
    yield { lbn, data, bytes: piece.length };
    lbn += data.length / bs;
  }
}

/** Upper bound of map nodes a change of `leaves` distinct leaves can copy. */
function mapNodesFor(vol: Volume, leaves: number): number {
  let nodes = 0;
  let level = leaves;
  for (let d = 0; d < vol.map.depth; d++) {
    nodes += level;
    level = Math.max(1, Math.ceil(level / (vol.blockSize / 8)));
  }
  return nodes;
}

/**
 * Room the CP itself needs beyond the blocks held back for it: the plane blocks it changes
 * (active and mark-on-allocate, at most one each per changed block), their journal index
 * and what the allocator keeps for one more block (see block-allocation.ts). Not more: on a
 * small volume of large blocks a generous constant refused imports that fit (a 12-block
 * volume of 256K blocks could not take 3 changed blocks from a file, and took them from
 * stdin, which writes without estimating). Should the CP still find no room, it fails
 * before its root record, and the volume stays at its last CP.
 */
function journalFor(vol: Volume, blocks: number): number {
  // what the allocator keeps for the CP (block-allocation.ts), less what the free count left out already
  const shadows = vol.snapshots().filter((s) => s.shadow).length;
  const cp = 2 * Math.min(vol.layout.planeBlocks, blocks) + 4 + (shadows > 0 ? 1 + Math.min(vol.layout.tableBlocks, shadows) : 0);
  return Math.max(0, cp - vol.heldBackBlocks);
}

interface ImportPlan {
  changed: number[];
  zeroed: Array<[number, number]>;
  unchanged: number;
  bytes: number;
  blocks: number;
  need: number;
}

/** Dry pass: which logical blocks the import would write or unmap, and how many blocks that takes. */
async function planImport(vol: Volume, source: ImageSource, progress: Progress, tuning: ImportTuning): Promise<ImportPlan> {
  const bs = vol.blockSize;
  const chunkBytes = chunkBytesOf(bs, tuning);
  const plan: ImportPlan = { changed: [], zeroed: [], unchanged: 0, bytes: 0, blocks: 0, need: 0 };
  const leaves = new Set<number>();
  const leafSpan = bs / 8;
  const slots = new ChunkSlots(chunkBytes / bs, bs);
  for await (const { lbn, n, bytes, plan: p, slot } of comparedChunks(vol, source, chunkBytes, slots, tuning.threads)) {
    const olds = slot.olds;
    for (const k of p.changed) {
      plan.changed.push(lbn + k);
      leaves.add(Math.floor((lbn + k) / leafSpan));
    }
    for (const k of p.zeroed) {
      plan.zeroed.push([lbn + k, olds[k]]);
      leaves.add(Math.floor((lbn + k) / leafSpan));
    }
    slots.give(slot); // only the plan is kept
    plan.unchanged += p.unchanged;
    plan.bytes += bytes;
    plan.blocks += n;
    progress.update(plan.bytes);
  }
  plan.need = plan.changed.length + mapNodesFor(vol, leaves.size) + journalFor(vol, plan.changed.length);
  return plan;
}

/** Writes a planned import: reads only the changed blocks back from the source. */
async function applyPlan(vol: Volume, source: ImageSource, plan: ImportPlan, writes: WriteBehind, result: ImportResult, progress: Progress): Promise<void> {
  const bs = vol.blockSize;
  const zero = Buffer.alloc(bs);
  for (const [lbn, vbn] of plan.zeroed) vol.writeLogical(lbn, zero, { vbn, zero: true });
  const maxRun = Math.max(1, Math.floor(CHUNK_BYTES / bs));
  const buf = Buffer.alloc(maxRun * bs);
  const whole = Array.from({ length: maxRun }, (_, k) => k);
  const reader = source.openReader!();
  try {
    let i = 0;
    while (i < plan.changed.length) {
      let j = i + 1;
      while (j < plan.changed.length && j - i < maxRun && plan.changed[j] === plan.changed[j - 1] + 1) j++;
      const first = plan.changed[i];
      const data = buf.subarray(0, (j - i) * bs);
      await writes.written(); // the last run's writes are out of buf
      data.fill(0, reader.read(first * bs, data));
      const olds = Array.from({ length: j - i }, (_, k) => vol.map.lookup(first + k));
      await writeChanged(vol, writes, first, data, olds, whole.slice(0, j - i));
      i = j;
      progress.update(i * bs);
    }
  } finally {
    reader.close();
  }
  result.changedBlocks = plan.changed.length;
  result.unchangedBlocks = plan.unchanged;
  result.unmappedBlocks = plan.zeroed.length;
  result.bytes = plan.bytes;
  result.blocks = plan.blocks;
}

function chunkBytesOf(bs: number, tuning: ImportTuning): number {
  return Math.max(bs, Math.floor((tuning.chunkBytes ?? CHUNK_BYTES) / bs) * bs);
}

/** How an import cuts its work: the defaults suit real images; tests make chunks small. */
export interface ImportTuning {
  /** Bytes of the image compared and written at once (whole blocks). */
  chunkBytes?: number;
  /** Compare threads besides this one, for a file source of at least 8 chunks (0: none). */
  threads?: number;
}

export async function importImage(vol: Volume, source: ImageSource, progress: Progress = noProgress, tuning: ImportTuning = {}): Promise<ImportResult> {
  const bs = vol.blockSize;
  const logicalSize = vol.rootRecord.logicalSize;
  if (source.size !== undefined && source.size > logicalSize) {
    throw new InvalidInputError(`${source.name}: image is larger than the logical disk (${source.size} > ${logicalSize} bytes)`, 'create a volume with a larger --size');
  }
  // When the worst case (every block changes) might not fit, plan first and write only
  // if the planned change fits: a full volume then refuses before writing anything.
  let plan: ImportPlan | null = null;
  if (source.size !== undefined && source.rereadable && source.openReader) {
    const blocks = Math.ceil(source.size / bs);
    const upper = blocks + mapNodesFor(vol, Math.ceil(blocks / (bs / 8))) + journalFor(vol, blocks);
    // the exact free count is a pass over every plane: only when a cheap bound leaves doubt
    // (blocks only shadow snapshots hold count too: the allocator takes them once no free one is left)
    const free = upper <= vol.freeLowerBound() ? upper : vol.countFree();
    const reusable = upper <= free ? 0 : vol.countReusable();
    if (upper > free + reusable) {
      progress.start('comparing', source.size, 'bytes');
      plan = await planImport(vol, source, progress, tuning);
      progress.stop();
      if (plan.need > free + reusable) {
        const more = reusable > 0 ? ` (and ${reusable} held only by shadow snapshots)` : '';
        throw new VolumeFullError(`${vol.path}: volume is full: the import needs about ${plan.need} blocks, ${free} are free${more}`, 'delete snapshots you no longer need, or create a larger volume');
      }
    }
  }
  const chunkBytes = chunkBytesOf(bs, tuning);
  const result: ImportResult = { bytes: 0, blocks: 0, changedBlocks: 0, unchangedBlocks: 0, unmappedBlocks: 0, generation: 0 };
  // block data is written behind, on new VBNs only, while the next chunks are compared;
  // the CP's sync comes after every write is done
  // through the page cache, unlike restore and mirror: a re-import compares against the
  // blocks written here, and reads them from memory instead of the disk (measured on 4 GiB:
  // with direct I/O the import took 3.8 s instead of 4-9.5 s, the re-import after it
  // 4.5-4.9 s instead of 1.6-2.3 s)
  const writes = new WriteBehind(vol.file, { writeback: true }); // ends in a CP
  const slots = new ChunkSlots(chunkBytes / bs, bs);
  // the LBNs it changes, for an observer that must know (a write journal): told before the CP
  const changed: BlockSet | null = vol.observer?.blocksChanged ? new BlockSet() : null;
  let end = 0;
  try {
    if (plan) {
      progress.start('writing', plan.changed.length * bs, 'bytes');
      await applyPlan(vol, source, plan, writes, result, progress);
      if (changed) {
        for (const l of plan.changed) changed.add(l);
        for (const [l] of plan.zeroed) changed.add(l);
      }
      end = plan.blocks;
    } else progress.start('importing', source.size ?? 0, 'bytes');

    const zero = Buffer.alloc(bs);
    if (!plan) for await (const { lbn, n, bytes, plan, slot } of comparedChunks(vol, source, chunkBytes, slots, tuning.threads)) {
      for (const k of plan.zeroed) vol.writeLogical(lbn + k, zero, { vbn: slot.olds[k], zero: true });
      await writeChanged(vol, writes, lbn, slot.out, slot.olds, plan.changed);
      if (changed) {
        for (const k of plan.changed) changed.add(lbn + k);
        for (const k of plan.zeroed) changed.add(lbn + k);
      }
      writes.written().then(() => slots.give(slot), () => undefined); // reused once its writes are done
      result.changedBlocks += plan.changed.length;
      result.unchangedBlocks += plan.unchanged;
      result.unmappedBlocks += plan.zeroed.length;
      result.bytes += bytes;
      result.blocks += n;
      end = Math.max(end, lbn + n); // chunks may come out of order
      progress.update(result.bytes);
    }
    // the disk beyond the image reads as zeros
    const tail: Array<[number, number]> = [];
    vol.map.walkRange(end, vol.logicalBlocks, (l, v) => tail.push([l, v]));
    for (const [l, v] of tail) {
      vol.writeLogical(l, zero, { vbn: v, zero: true });
      changed?.add(l);
    }
    result.unmappedBlocks += tail.length;
    result.unchangedBlocks += vol.logicalBlocks - end - tail.length;
    await writes.drain();
    if (changed && changed.size > 0) vol.observer!.blocksChanged!(changed, `${vol.path} was imported into (volume import, ${source.name})`);
    vol.commit();
  } catch (err) {
    await writes.settle(); // nothing of ours is still being written when the volume gives up
    const written = vol.freshRanges();
    vol.abort();
    // the blocks written are free again, but the file keeps their space: on a file system
    // that filled up, every later write would fail too (a block device has nothing to give back)
    if (!vol.file.isBlockDevice && written.length > 0) punchHoles(vol.path, written);
    throw err;
  } finally {
    progress.stop();
  }
  result.generation = vol.rootRecord.generation;
  return result;
}

/**
 * Writes the changed blocks of a chunk (`blocks` holds them packed, in `changed`'s order)
 * to new VBNs, behind: a run of consecutive new VBNs is one write.
 */
async function writeChanged(vol: Volume, writes: WriteBehind, lbn: number, blocks: Buffer, olds: ArrayLike<number>, changed: number[]): Promise<void> {
  const bs = vol.blockSize;
  let from = 0; // the run: blocks from.. go to VBNs vbn..
  let vbn = 0;
  let count = 0;
  const flush = async () => {
    if (count > 0) await writes.write(blocks.subarray(from * bs, (from + count) * bs), vol.layout.vbnOffset(vbn));
    count = 0;
  };
  for (let i = 0; i < changed.length; i++) {
    const k = changed[i];
    const old = olds[k];
    if (old !== 0 && vol.isFresh(old)) {
      // written since the last CP: in place, after whatever is still being written there
      await flush();
      await writes.written();
      vol.writeBlock(old, blocks.subarray(i * bs, (i + 1) * bs));
      continue;
    }
    const v = vol.allocate();
    if (count === 0 || v !== vbn + count) {
      await flush();
      from = i;
      vbn = v;
    }
    count++;
    vol.map.set(lbn + k, v);
    if (old !== 0) vol.release(old);
    else vol.noteMapped(1);
  }
  await flush();
}
