// The source blocks a shipper sends outside the journal: the whole mapped disk for a
// seed, the changed blocks for a resync. Both come from a snapshot the server took for the
// shipper (journal-ops.ts), read through a lockless view while it is pinned; or, when no
// server holds the volume, from its last CP, opened here.
import { openVolumeAccess } from '../control/access.js';
import { ServedVolume } from '../control/served-volume.js';
import type { LogicalMap } from '../volume/logical-map.js';
import { planLogicalExtents } from '../volume/logical-io.js';
import { Volume } from '../volume/volume.js';
import type { IntervalBlock } from './destination-api.js';
import type { JournalSnapshotAnswer } from './journal-ops.js';

/** A consistent image of the source: blocks readable until close(). */
export interface SourceImage {
  /** Every journal record up to this one is in the image. */
  journalTo: number;
  time: number;
  /** Mapped blocks only, ascending. */
  mappedBlocks(): { count: number; blocks: AsyncIterable<IntervalBlock> };
  /** The given LBNs, as they read in the image (null data for unmapped ones). */
  blocksOf(lbns: number[]): AsyncIterable<IntervalBlock>;
  close(): void;
}

/** Through the volume's server: a snapshot it takes now (op journal.seed or journal.resync), or null when no server holds the volume. */
export async function servedImage(volumePath: string, op: 'journal.seed' | 'journal.resync'): Promise<SourceImage | null> {
  const access = await openVolumeAccess(volumePath, { write: false });
  if (!(access instanceof ServedVolume)) {
    access.close();
    return null;
  }
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
  return {
    journalTo,
    time,
    mappedBlocks() {
      let count = 0;
      const step = 1 << 16;
      for (let lbn = 0; lbn < logicalBlocks; lbn += step) {
        for (const e of planLogicalExtents(vol, map, lbn * bs, Math.min(step, logicalBlocks - lbn) * bs)) if (e.position >= 0) count += e.length / bs;
      }
      async function* gen(): AsyncGenerator<IntervalBlock> {
        for (let lbn = 0; lbn < logicalBlocks; lbn++) {
          const vbn = map.lookup(lbn);
          if (vbn !== 0) yield { lbn, data: readBlock(vbn) };
        }
      }
      return { count, blocks: gen() };
    },
    async *blocksOf(lbns: number[]) {
      for (const lbn of lbns) {
        const vbn = map.lookup(lbn);
        yield { lbn, data: vbn === 0 ? null : readBlock(vbn) };
      }
    },
    close,
  };
}
