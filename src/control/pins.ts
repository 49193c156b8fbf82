// Pins: snapshots that clients of a server are reading without the lock (through
// Volume.openView: a dump, an export). A pinned snapshot cannot be deleted or renamed,
// so its plane and blocks stay as they are until the reader lets go. Pins belong to a
// control connection and go with it: a reader killed with -9 leaves none behind.
//
// A temporary snapshot (taken for one export of the active file system), or one whose
// deletion was put off because a reader held it (a mirror's previous snapshot), is
// deleted by the server once nobody pins it any more.
import { BusyError } from '../core/errors.js';
import { processExists } from '../fs/stale-temp.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';

export interface PinHolder {
  /** The control connection. */
  session: number;
  /** The client's process id, as it introduced itself. */
  pid: number | null;
}

export class PinTable {
  /** Snapshot id -> the connections pinning it (a connection pins a snapshot once). */
  private readonly pins = new Map<number, Map<number, PinHolder>>();
  private readonly temporary = new Set<number>();

  pin(e: SnapshotEntry, holder: PinHolder, opts: { temporary?: boolean } = {}): void {
    let m = this.pins.get(e.id);
    if (!m) this.pins.set(e.id, (m = new Map()));
    m.set(holder.session, holder);
    if (opts.temporary) this.temporary.add(e.id);
  }

  /** Drops the pin of `session` on snapshot `id`. Returns the temporary snapshots nobody pins now. */
  unpin(id: number, session: number): number[] {
    const m = this.pins.get(id);
    if (m) {
      m.delete(session);
      if (m.size === 0) this.pins.delete(id);
    }
    return this.orphans([id]);
  }

  /** Drops every pin of a connection that ended. Returns the temporary snapshots nobody pins now. */
  releaseSession(session: number): number[] {
    const touched: number[] = [];
    for (const [id, m] of this.pins) {
      if (!m.delete(session)) continue;
      touched.push(id);
      if (m.size === 0) this.pins.delete(id);
    }
    return this.orphans(touched);
  }

  /** The snapshot is gone (deleted): forget it was temporary. */
  forget(id: number): void {
    this.pins.delete(id);
    this.temporary.delete(id);
  }

  /** Makes `id` temporary: deleted (see dropTemporaries) once nobody pins it any more. */
  deleteWhenUnpinned(id: number): void {
    this.temporary.add(id);
  }

  /** True when a live process pins snapshot `id` (see assertUnpinned). */
  held(id: number): boolean {
    return this.liveHolders(id).length > 0;
  }

  holders(id: number): PinHolder[] {
    return [...(this.pins.get(id)?.values() ?? [])];
  }

  isPinned(id: number): boolean {
    return this.pins.has(id);
  }

  /**
   * Throws "busy" when snapshot `e` is pinned: `doing` is what was refused ("deleted",
   * "renamed"). Pins of a process that is gone are ignored (its connection's end, which
   * drops them, may not have been noticed yet).
   */
  assertUnpinned(volume: string, e: SnapshotEntry, doing: string): void {
    const h = this.liveHolders(e.id);
    if (h.length === 0) return;
    const pids = [...new Set(h.map((x) => (x.pid === null ? 'unknown' : String(x.pid))))];
    throw new BusyError(
      `${volume}: snapshot "${e.name}" is pinned by imgstream process${pids.length > 1 ? 'es' : ''} ${pids.join(', ')} (reading or serving it) and cannot be ${doing}`,
      'wait for the dump, export or transfer to finish, or stop that process (a snapshot served beside the volume: stop its serve nbd --snapshot)',
    );
  }

  private liveHolders(id: number): PinHolder[] {
    return this.holders(id).filter((x) => x.pid === null || processExists(x.pid));
  }

  private orphans(ids: number[]): number[] {
    return ids.filter((id) => this.temporary.has(id) && !this.pins.has(id));
  }
}
