// The in-memory twin of a protection destination, for tests of the shipper: it keeps
// what it is sent and answers as LocalProtectDestination does (the same refusals, the
// same states; test/journal/destination-contract.test.ts runs one suite against both,
// and against a peer), without retention or files. imageAt() rebuilds the disk at any
// interval from what was received.
import { BusyError, InvalidInputError } from '../core/errors.js';
import { blocksOfEntry, DEFAULT_KEEP_MS, type DestinationState, type IntervalBlock, type ProtectDestination, type ProtectedSource, type SeedImage, type ShippedInterval, type SnapshotRename } from './destination-api.js';

interface Received {
  seq: number;
  end: number;
  snapshots: string[];
  renames: SnapshotRename[];
  blocks: Map<number, Buffer | null>;
}

async function collect(blocks: AsyncIterable<IntervalBlock> | Iterable<IntervalBlock>, count: number, logicalBlocks: number, blockSize: number, what: string): Promise<Map<number, Buffer | null>> {
  const out = new Map<number, Buffer | null>();
  let last = -1;
  for await (const b of blocks) {
    const run = blocksOfEntry(b);
    if (!Number.isSafeInteger(b.lbn) || b.lbn <= last || b.lbn + run > logicalBlocks) throw new InvalidInputError(`${what}: block ${b.lbn} is out of order or outside the disk (${logicalBlocks} blocks)`);
    if (b.data !== null && (b.data.length !== blockSize || run !== 1)) throw new InvalidInputError(`${what}: block ${b.lbn} has ${b.data.length} bytes, not ${blockSize}`);
    last = b.lbn + run - 1;
    if (b.data) out.set(b.lbn, Buffer.from(b.data));
    else for (let i = 0; i < run; i++) out.set(b.lbn + i, null);
  }
  if (out.size !== count) throw new InvalidInputError(`${what}: ${out.size} blocks, but its count says ${count}`);
  return out;
}

export class MemoryProtectDestination implements ProtectDestination {
  readonly description = 'memory';
  source: ProtectedSource | null = null;
  keepMs = 0;
  /** The retention before the last open() changed it (null: unchanged). */
  keepWas: number | null = null;
  seedTime = 0;
  seedBlocks: Map<number, Buffer | null> | null = null;
  readonly intervals: Received[] = [];
  journalTo = 0;
  /** quiet(): no write from the newest interval's end until this time. */
  quietTo = 0;
  private holder = false;

  private answer(): DestinationState {
    const end = Math.max(this.intervals.at(-1)?.end ?? this.seedTime, this.quietTo);
    return { seeded: this.seedBlocks !== null, intervalSeq: this.intervals.length, journalTo: this.journalTo, window: this.seedBlocks ? { start: this.seedTime, end } : null, keepMs: this.keepMs, keepWas: this.keepWas };
  }

  async open(source: ProtectedSource, keepMs: number | null): Promise<DestinationState> {
    if (this.holder) throw new BusyError('memory: protection destination is in use by another shipper');
    if (this.source && this.source.uuid !== source.uuid) throw new InvalidInputError(`memory: protects volume ${this.source.uuid} (${this.source.path}), not ${source.uuid} (${source.path})`);
    if (this.source && (this.source.blockSize !== source.blockSize || this.source.logicalSize !== source.logicalSize)) throw new InvalidInputError(`memory: protects a disk of another geometry than ${source.path}`);
    const keep = keepMs ?? (this.source === null ? DEFAULT_KEEP_MS : this.keepMs);
    this.keepWas = this.source !== null && keep !== this.keepMs ? this.keepMs : null;
    this.keepMs = keep;
    this.source = { ...source };
    this.holder = true;
    return this.answer();
  }

  private opened(): ProtectedSource {
    if (!this.holder || !this.source) throw new Error('protection destination used before open()');
    return this.source;
  }

  async seed(image: SeedImage): Promise<DestinationState> {
    const s = this.opened();
    if (this.seedBlocks) throw new InvalidInputError(`memory: already seeded (recovery points up to interval ${this.intervals.length})`);
    this.seedBlocks = await collect(image.blocks, image.blockCount, s.logicalSize / s.blockSize, s.blockSize, 'seed');
    this.seedTime = image.time;
    this.journalTo = image.journalTo;
    return this.answer();
  }

  async append(i: ShippedInterval): Promise<DestinationState> {
    const s = this.opened();
    if (!this.seedBlocks) throw new InvalidInputError('memory: not seeded yet');
    const state = this.answer();
    if (i.seq !== state.intervalSeq + 1) throw new InvalidInputError(`memory: interval ${i.seq} does not follow interval ${state.intervalSeq}`);
    if (!(i.end >= i.start) || i.end < state.window!.end) throw new InvalidInputError(`memory: interval ${i.seq} ends before the newest recovery point`);
    if (i.journalTo < this.journalTo) throw new InvalidInputError(`memory: interval ${i.seq} ends at journal record ${i.journalTo}, before ${this.journalTo}`);
    const blocks = await collect(i.blocks, i.blockCount, s.logicalSize / s.blockSize, s.blockSize, `interval ${i.seq}`);
    this.intervals.push({ seq: i.seq, end: i.end, snapshots: [...i.snapshots], renames: (i.renames ?? []).map(({ from, to }) => ({ from, to })), blocks });
    this.journalTo = i.journalTo;
    return this.answer();
  }

  async quiet(until: number): Promise<DestinationState> {
    this.opened();
    if (!this.seedBlocks) throw new InvalidInputError('memory: not seeded yet');
    this.quietTo = Math.max(this.quietTo, until);
    return this.answer();
  }

  async close(): Promise<void> {
    this.holder = false;
  }

  /** The disk as of interval `seq` (0: the seed), as a raw image. */
  imageAt(seq: number): Buffer {
    const s = this.source!;
    const img = Buffer.alloc(s.logicalSize);
    const put = (m: Map<number, Buffer | null>) => {
      for (const [lbn, data] of m) {
        if (data) data.copy(img, lbn * s.blockSize);
        else img.fill(0, lbn * s.blockSize, (lbn + 1) * s.blockSize);
      }
    };
    if (this.seedBlocks) put(this.seedBlocks);
    for (const iv of this.intervals.slice(0, seq)) put(iv.blocks);
    return img;
  }
}
