// The source blocks a shipper sends outside the journal: the whole mapped disk for a
// seed, the changed blocks for a resync (every block, when what changed is not known). Both come from a snapshot the server took for the
// shipper (journal-ops.ts), read through a lockless view while it is pinned; or, when no
// server holds the volume, from its last CP, opened here.
//
// A shipper never takes the volume's lock just to look: it may start (or poll for a
// resync) while the server restarts, and a lock held for that moment would make the
// server's start fail with "busy".
import { ServedVolume } from '../control/served-volume.js';
import { BlockFile } from '../volume/block-file.js';
import { readRootRecord } from '../volume/root-reader.js';
import { refuseUnfinishedRestore, statVolume } from '../volume/volume-open.js';
import { VolumeLock } from '../volume/volume-lock.js';
import type { LogicalMap } from '../volume/logical-map.js';
import type { BlockSet } from '../core/block-set.js';
import { Volume } from '../volume/volume.js';
import { BusyError } from '../core/errors.js';
import { JournalWriter } from './journal-writer.js';
import type { IntervalBlock } from './destination-api.js';
import type { JournalSnapshotAnswer } from './journal-ops.js';

/** Some blocks of an image: `count` blocks in `entries` entries (a run of unmapped blocks is one). */
export interface ImageBlocks {
  count: number;
  entries: number;
  blocks: AsyncIterable<IntervalBlock>;
}

/** Blocks of the map walked at once (the mapped ones are listed before they are read). */
const WALK_STEP = 1 << 16;

/**
 * The blocks of the runs [first, end) of `runs` as the map holds them, ascending: each
 * mapped one (lbn, vbn), and each stretch of unmapped ones (lbn, vbn 0, count). Cost ∝
 * the runs and what is mapped in them, never the blocks of an unmapped stretch.
 */
function* extentsOf(map: LogicalMap, runs: Iterable<[number, number]>): Generator<{ lbn: number; vbn: number; count: number }> {
  for (const [first, end] of runs) {
    let gap = first; // the first unmapped block not yet given
    for (let from = first; from < end; from += WALK_STEP) {
      const mapped: number[] = [];
      map.walkRange(from, Math.min(from + WALK_STEP, end), (lbn, vbn) => mapped.push(lbn, vbn));
      for (let i = 0; i < mapped.length; i += 2) {
        if (mapped[i] > gap) yield { lbn: gap, vbn: 0, count: mapped[i] - gap };
        yield { lbn: mapped[i], vbn: mapped[i + 1], count: 1 };
        gap = mapped[i] + 1;
      }
    }
    if (gap < end) yield { lbn: gap, vbn: 0, count: end - gap };
  }
}

/** A consistent image of the source: blocks readable until close(). */
export interface SourceImage {
  /** Every journal record up to this one is in the image. */
  journalTo: number;
  time: number;
  /** Mapped blocks only, ascending. */
  mappedBlocks(): { count: number; blocks: AsyncIterable<IntervalBlock> };
  /** The blocks of `set`, as they read in the image, ascending: a mapped block's data, or a run of unmapped ones as one zero entry. */
  blocksOf(set: BlockSet): ImageBlocks;
  /** Every LBN of the disk, the same way: a resync that cannot know what changed. */
  allBlocks(): ImageBlocks;
  close(): void;
}

/** The volume's server when one serves it now and answers on its control socket, else null (without taking the lock). */
export async function volumeServer(volumePath: string): Promise<ServedVolume | null> {
  const holder = VolumeLock.holder(volumePath);
  if (!holder?.control || holder.pid === process.pid) return null;
  try {
    return await ServedVolume.connect(volumePath, holder);
  } catch {
    return null; // it is stopping or starting
  }
}

/** What a volume is (uuid, block and logical size: fixed at creation), from its server or its root record, never locking it. */
export async function volumeIdentity(volumePath: string): Promise<{ uuid: string; blockSize: number; logicalSize: number }> {
  const server = await volumeServer(volumePath);
  if (server) {
    try {
      const info = await server.info();
      return { uuid: info.uuid, blockSize: info.blockSize, logicalSize: info.logicalSize };
    } finally {
      server.close();
    }
  }
  statVolume(volumePath); // the messages every command gives for a missing volume or a directory
  const file = BlockFile.open(volumePath, false);
  try {
    const r = readRootRecord(file, volumePath);
    // its disk is part old, part new: refused as every writer refuses it, before the journal is looked for or a destination made
    refuseUnfinishedRestore(volumePath, r);
    return { uuid: r.uuid, blockSize: r.blockSize, logicalSize: r.logicalSize };
  } finally {
    file.close();
  }
}

/** Through the volume's server: a snapshot it takes now (op journal.seed or journal.resync), or null when no server serves the volume. */
export async function servedImage(volumePath: string, op: 'journal.seed' | 'journal.resync'): Promise<SourceImage | null> {
  const access = await volumeServer(volumePath);
  if (access === null) return null;
  try {
    const answer = await access.request<JournalSnapshotAnswer>(op);
    const view = access.openView();
    return imageOf(view, view.mapOf(answer.snapshot), answer.journalTo, answer.time, () => {
      view.close();
      access.close(); // the temporary snapshot goes with the connection
    });
  } catch (err) {
    access.close();
    throw err;
  }
}

/**
 * A resync's image of a volume no server holds (its journal overflowed, or lost records,
 * while it was idle: an import into it, a server killed while overflowed): opened here for
 * writing, its journal opened (which replays what a killed server acknowledged) to fix the
 * changed blocks and mark the resync as a server does, then read as of its last CP, held
 * until closed (a server started meanwhile is refused busy). Null when a process holds it.
 * `protect --once` only: a running shipper waits for the server instead, whose restart
 * must not find the volume held.
 */
export function idleResyncImage(volumePath: string): SourceImage | null {
  let vol: Volume;
  try {
    vol = Volume.open(volumePath, { write: true });
  } catch (err) {
    if (err instanceof BusyError) return null;
    throw err;
  }
  try {
    const w = JournalWriter.open(vol, { limitBytes: Number.MAX_SAFE_INTEGER });
    let seq: number;
    try {
      ({ seq } = w.resyncPoint('(idle volume)'));
    } finally {
      w.close();
    }
    return imageOf(vol, vol.map, seq, Date.now(), () => vol.close());
  } catch (err) {
    vol.close();
    throw err;
  }
}

/** The volume's last CP, opened here (no server holds it); `journalTo`: the journal's last CP marker. */
export function localImage(volumePath: string, journalTo: number): SourceImage {
  const vol = Volume.open(volumePath, { write: false });
  return imageOf(vol, vol.map, journalTo, vol.rootRecord.cpTimeMs, () => vol.close());
}

function imageOf(vol: Volume, map: LogicalMap, journalTo: number, time: number, close: () => void): SourceImage {
  const bs = vol.blockSize;
  const logicalBlocks = vol.rootRecord.logicalSize / bs;
  const readBlock = (vbn: number): Buffer => {
    const b = Buffer.allocUnsafe(bs);
    vol.file.read(b, vol.layout.vbnOffset(vbn));
    return b;
  };
  // counted first (a transfer's header says its entries), then read
  const blocksOfRuns = (runs: () => Iterable<[number, number]>, count: number): ImageBlocks => {
    let entries = 0;
    for (const _ of extentsOf(map, runs())) entries++;
    async function* gen(): AsyncGenerator<IntervalBlock> {
      for (const x of extentsOf(map, runs())) {
        if (x.vbn !== 0) yield { lbn: x.lbn, data: readBlock(x.vbn) };
        else yield x.count > 1 ? { lbn: x.lbn, data: null, count: x.count } : { lbn: x.lbn, data: null };
      }
    }
    return { count, entries, blocks: gen() };
  };
  return {
    journalTo,
    time,
    mappedBlocks() {
      // from the map's nodes: the cost follows what is mapped, not the disk's size
      let count = 0;
      map.walkRange(0, logicalBlocks, () => count++);
      const step = 1 << 16;
      async function* gen(): AsyncGenerator<IntervalBlock> {
        for (let from = 0; from < logicalBlocks; from += step) {
          const mapped: Array<[number, number]> = [];
          map.walkRange(from, Math.min(from + step, logicalBlocks), (lbn, vbn) => mapped.push([lbn, vbn]));
          for (const [lbn, vbn] of mapped) yield { lbn, data: readBlock(vbn) };
        }
      }
      return { count, blocks: gen() };
    },
    blocksOf(set: BlockSet) {
      return blocksOfRuns(() => set.runs(), set.size);
    },
    allBlocks() {
      return blocksOfRuns(() => [[0, logicalBlocks] as [number, number]], logicalBlocks);
    },
    close,
  };
}
