// Import: make the logical disk equal to a raw image (followed by zeros up to the disk
// size), writing only the blocks whose content changed, in one CP at the end: a kill at
// any moment leaves the previous CP, never a mix. Zero blocks are unmapped (thin).
import { InvalidInputError, VolumeFullError } from '../errors.js';
import { noProgress, type Progress } from '../progress.js';
import { isZero, type Volume } from './volume.js';

export interface ImageSource {
  /** A fresh stream of the image's bytes. */
  open(): AsyncIterable<Uint8Array>;
  /** Length in bytes when known in advance (files, devices); undefined for pipes. */
  size?: number;
  /** True when open() may be called twice (a file): allows a dry pre-pass when space is tight. */
  rereadable: boolean;
  /** Reads bytes at a position (files only): lets a tight import fetch just the changed blocks. */
  readAt?(position: number, buf: Buffer): number;
  name: string;
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

interface ChunkPlan {
  changed: number[];
  unchanged: number;
  zeroed: number[];
}

/** Bytes compared at once before looking at single blocks: most of a re-import is unchanged. */
const SEGMENT_BYTES = 64 << 10;

/**
 * Reads what the disk holds for a chunk's blocks into `scratch`, each at its block's
 * place (zeros where the disk has none), in runs of consecutive VBNs.
 */
function readOlds(vol: Volume, olds: number[], scratch: Buffer): void {
  const bs = vol.blockSize;
  const n = olds.length;
  let i = 0;
  while (i < n) {
    let j = i + 1;
    if (olds[i] === 0) {
      while (j < n && olds[j] === 0) j++;
      scratch.fill(0, i * bs, j * bs);
    } else {
      while (j < n && olds[j] === olds[j - 1] + 1) j++;
      vol.file.read(scratch.subarray(i * bs, j * bs), vol.layout.vbnOffset(olds[i]));
    }
    i = j;
  }
}

/**
 * Compares one chunk of the image with what the disk holds (`scratch`, from readOlds):
 * which blocks differ. Whole segments compare at once; only a segment that differs is
 * looked at block by block.
 */
function planChunk(vol: Volume, data: Buffer, olds: number[], scratch: Buffer): ChunkPlan {
  const bs = vol.blockSize;
  const n = olds.length;
  const plan: ChunkPlan = { changed: [], unchanged: 0, zeroed: [] };
  const per = Math.max(1, Math.floor(SEGMENT_BYTES / bs));
  for (let first = 0; first < n; first += per) {
    const last = Math.min(n, first + per);
    // equal: every block holds what the disk has (or is zero where the disk has none)
    if (data.subarray(first * bs, last * bs).equals(scratch.subarray(first * bs, last * bs))) {
      plan.unchanged += last - first;
      continue;
    }
    for (let k = first; k < last; k++) {
      const block = data.subarray(k * bs, (k + 1) * bs);
      const zero = isZero(block);
      if (olds[k] === 0) {
        if (zero) plan.unchanged++;
        else plan.changed.push(k);
      } else if (zero) plan.zeroed.push(k);
      else if (block.equals(scratch.subarray(k * bs, (k + 1) * bs))) plan.unchanged++;
      else plan.changed.push(k);
    }
  }
  return plan;
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

/** Room the CP itself needs: plane blocks (active + mark-on-allocate) and the journal index. */
function journalFor(vol: Volume, blocks: number): number {
  const planeBlocks = 2 * Math.min(vol.layout.planeBlocks, blocks) + 8;
  return planeBlocks * 2;
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
async function planImport(vol: Volume, source: ImageSource, progress: Progress): Promise<ImportPlan> {
  const bs = vol.blockSize;
  const chunkBytes = Math.max(bs, Math.floor(CHUNK_BYTES / bs) * bs);
  const scratch = Buffer.alloc(chunkBytes);
  const plan: ImportPlan = { changed: [], zeroed: [], unchanged: 0, bytes: 0, blocks: 0, need: 0 };
  const leaves = new Set<number>();
  const leafSpan = bs / 8;
  for await (const { lbn, data, bytes } of paddedChunks(source.open(), chunkBytes, bs, vol.rootRecord.logicalSize, source.name)) {
    const n = data.length / bs;
    const olds = new Array<number>(n);
    for (let k = 0; k < n; k++) olds[k] = vol.map.lookup(lbn + k);
    readOlds(vol, olds, scratch);
    const p = planChunk(vol, data, olds, scratch);
    for (const k of p.changed) {
      plan.changed.push(lbn + k);
      leaves.add(Math.floor((lbn + k) / leafSpan));
    }
    for (const k of p.zeroed) {
      plan.zeroed.push([lbn + k, olds[k]]);
      leaves.add(Math.floor((lbn + k) / leafSpan));
    }
    plan.unchanged += p.unchanged;
    plan.bytes += bytes;
    plan.blocks += n;
    progress.update(plan.bytes);
  }
  plan.need = plan.changed.length + mapNodesFor(vol, leaves.size) + journalFor(vol, plan.changed.length);
  return plan;
}

/** Writes a planned import: reads only the changed blocks back from the source. */
function applyPlan(vol: Volume, source: ImageSource, plan: ImportPlan, result: ImportResult, progress: Progress): void {
  const bs = vol.blockSize;
  const zero = Buffer.alloc(bs);
  for (const [lbn, vbn] of plan.zeroed) vol.writeLogical(lbn, zero, { vbn, zero: true });
  const maxRun = Math.max(1, Math.floor(CHUNK_BYTES / bs));
  const buf = Buffer.alloc(maxRun * bs);
  let i = 0;
  while (i < plan.changed.length) {
    let j = i + 1;
    while (j < plan.changed.length && j - i < maxRun && plan.changed[j] === plan.changed[j - 1] + 1) j++;
    const first = plan.changed[i];
    const data = buf.subarray(0, (j - i) * bs);
    data.fill(0, source.readAt!(first * bs, data));
    const olds = Array.from({ length: j - i }, (_, k) => vol.map.lookup(first + k));
    writeChanged(vol, first, data, olds, olds.map((_, k) => k));
    i = j;
    progress.update(i * bs);
  }
  result.changedBlocks = plan.changed.length;
  result.unchangedBlocks = plan.unchanged;
  result.unmappedBlocks = plan.zeroed.length;
  result.bytes = plan.bytes;
  result.blocks = plan.blocks;
}

export async function importImage(vol: Volume, source: ImageSource, progress: Progress = noProgress): Promise<ImportResult> {
  const bs = vol.blockSize;
  const logicalSize = vol.rootRecord.logicalSize;
  if (source.size !== undefined && source.size > logicalSize) {
    throw new InvalidInputError(`${source.name}: image is larger than the logical disk (${source.size} > ${logicalSize} bytes)`, 'create a volume with a larger --size');
  }
  // When the worst case (every block changes) might not fit, plan first and write only
  // if the planned change fits: a full volume then refuses before writing anything.
  let plan: ImportPlan | null = null;
  if (source.size !== undefined && source.rereadable && source.readAt) {
    const blocks = Math.ceil(source.size / bs);
    const upper = blocks + mapNodesFor(vol, Math.ceil(blocks / (bs / 8))) + journalFor(vol, blocks);
    // the exact free count is a pass over every plane: only when a cheap bound leaves doubt
    const free = upper <= vol.freeLowerBound() ? upper : vol.countFree();
    if (upper > free) {
      progress.start('comparing', source.size, 'bytes');
      plan = await planImport(vol, source, progress);
      progress.stop();
      if (plan.need > free) {
        throw new VolumeFullError(`${vol.path}: volume is full: the import needs about ${plan.need} blocks, ${free} are free`, 'delete snapshots you no longer need, or create a larger volume');
      }
    }
  }
  const chunkBytes = Math.max(bs, Math.floor(CHUNK_BYTES / bs) * bs);
  const scratch = Buffer.alloc(chunkBytes);
  const result: ImportResult = { bytes: 0, blocks: 0, changedBlocks: 0, unchangedBlocks: 0, unmappedBlocks: 0, generation: 0 };
  let end = 0;
  try {
    if (plan) {
      progress.start('writing', plan.changed.length * bs, 'bytes');
      applyPlan(vol, source, plan, result, progress);
      end = plan.blocks;
    } else progress.start('importing', source.size ?? 0, 'bytes');

    if (!plan) for await (const { lbn, data, bytes } of paddedChunks(source.open(), chunkBytes, bs, logicalSize, source.name)) {
      const n = data.length / bs;
      const olds = new Array<number>(n);
      for (let k = 0; k < n; k++) olds[k] = vol.map.lookup(lbn + k);
      readOlds(vol, olds, scratch);
      const plan = planChunk(vol, data, olds, scratch);
      for (const k of plan.zeroed) vol.writeLogical(lbn + k, data.subarray(k * bs, (k + 1) * bs), { vbn: olds[k], zero: true });
      writeChanged(vol, lbn, data, olds, plan.changed);
      result.changedBlocks += plan.changed.length;
      result.unchangedBlocks += plan.unchanged;
      result.unmappedBlocks += plan.zeroed.length;
      result.bytes += bytes;
      result.blocks += n;
      end = lbn + n;
      progress.update(result.bytes);
    }
    // the disk beyond the image reads as zeros
    const tail: Array<[number, number]> = [];
    vol.map.walkRange(end, vol.logicalBlocks, (l, v) => tail.push([l, v]));
    const zero = Buffer.alloc(bs);
    for (const [l, v] of tail) vol.writeLogical(l, zero, { vbn: v, zero: true });
    result.unmappedBlocks += tail.length;
    result.unchangedBlocks += vol.logicalBlocks - end - tail.length;
    vol.commit();
  } catch (err) {
    vol.abort();
    throw err;
  } finally {
    progress.stop();
  }
  result.generation = vol.rootRecord.generation;
  return result;
}

/** Writes the changed blocks of a chunk to new VBNs, gathering consecutive VBNs into one write. */
function writeChanged(vol: Volume, lbn: number, data: Buffer, olds: number[], changed: number[]): void {
  const bs = vol.blockSize;
  let runStart = -1;
  let runVbn = 0;
  let bufs: Buffer[] = [];
  const flush = () => {
    if (bufs.length) vol.file.writev(bufs, vol.layout.vbnOffset(runStart));
    bufs = [];
  };
  for (const k of changed) {
    const block = data.subarray(k * bs, (k + 1) * bs);
    const old = olds[k];
    if (old !== 0 && vol.isFresh(old)) {
      vol.writeBlock(old, block);
      continue;
    }
    const vbn = vol.allocate();
    if (bufs.length && vbn === runVbn + 1 && bufs.length < 1024) {
      bufs.push(block);
      runVbn = vbn;
    } else {
      flush();
      runStart = vbn;
      runVbn = vbn;
      bufs.push(block);
    }
    vol.map.set(lbn + k, vbn);
    if (old !== 0) vol.release(old);
    else vol.noteMapped(1);
  }
  flush();
}
