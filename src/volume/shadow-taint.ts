// Shadow snapshots whose blocks a change set takes before its CP. The allocator overwrites
// such a block in place, and only the next CP clears its bit and counts the reuse; a
// change set that is aborted or killed before that CP would leave the shadow counted as
// intact over a block that changed. So before the first such block is handed out, a root
// record (the last CP's state, with the shadow listed as tainted) is written and synced:
// a tainted shadow counts as having had blocks reused until a CP records the count in the
// snapshot table (format/volume-root.ts, RootRecord.taintedShadows).
import { ROOT_TAINT_SLOTS, type RootRecord } from '../format/volume-root.js';
import type { BlockFile } from './block-file.js';
import { writeRootRecord } from './cp-journal.js';
import type { VolumeLayout } from './layout.js';
import { readRootRecord } from './root-reader.js';
import type { SnapshotTable } from './snapshot-table.js';

/** What the taint needs of the volume. */
export interface TaintHost {
  readonly path: string;
  readonly file: BlockFile;
  readonly layout: VolumeLayout;
  readonly table: SnapshotTable;
  /** The volume's current root record (changed in place here). */
  root(): RootRecord;
  testBit(plane: number, vbn: number): boolean;
}

export class ShadowTaint {
  constructor(private readonly h: TaintHost) {}

  /** Shadow snapshot `id` is listed as tainted: it counts as having had blocks reused. */
  readonly isTainted = (id: number): boolean => this.h.root().allShadowsTainted || this.h.root().taintedShadows.includes(id);

  /** Before block `vbn` is taken from the shadow snapshots holding it: those not yet tainted are, durably. */
  beforeReuse(vbn: number): void {
    const h = this.h;
    const root = h.root();
    if (root.allShadowsTainted) return;
    const ids = h.table.list().filter((s) => s.shadow && !this.isTainted(s.id) && h.testBit(h.layout.snapshotPlane(s.slot), vbn)).map((s) => s.id);
    if (ids.length === 0) return;
    const committed = readRootRecord(h.file, h.path);
    const tainted = [...committed.taintedShadows, ...ids];
    const r: RootRecord = { ...committed, generation: committed.generation + 1, taintedShadows: tainted, allShadowsTainted: committed.allShadowsTainted || tainted.length > ROOT_TAINT_SLOTS };
    writeRootRecord(h.file, h.layout, r);
    root.generation = r.generation;
    root.taintedShadows = r.taintedShadows;
    root.allShadowsTainted = r.allShadowsTainted;
  }

  /** A CP about to commit writes the tainted shadows' table entries (their counts), so its root lists none. */
  settle(): void {
    const root = this.h.root();
    if (!root.allShadowsTainted && root.taintedShadows.length === 0) return;
    for (const s of this.h.table.list()) if (s.shadow && this.isTainted(s.id)) this.h.table.write(s.slot, s);
  }
}
