// What a connection sees of a server once it has chosen: the export it selected (the
// main one or a snapshot export), what it negotiated, and the counts a server reports;
// and a server's exports by name (ExportViews).
import { ExistsError } from '../core/errors.js';
import type { LogicalMap } from '../volume/logical-map.js';
import type { MetaContext } from './meta-context.js';
import type { Volume } from '../volume/volume.js';

/** One export clients can select by name: the main one, or a snapshot added while serving. */
export interface ExportView {
  readonly name: string;
  readonly snapshot: string | null;
  readonly readOnly: boolean;
  readonly size: number;
  readonly map: LogicalMap;
  readonly description: string;
  /** Set once the view is removed: its connections get ESHUTDOWN from then on. */
  closed: boolean;
}

/** What one connection negotiated: the export it selected, structured replies, metadata contexts. */
export interface NbdSession {
  view: ExportView;
  structured: boolean;
  contexts: MetaContext[];
}

export interface NbdExportStats {
  reads: number;
  writes: number;
  flushes: number;
  trims: number;
  writeZeroes: number;
  /** BLOCK_STATUS requests answered. */
  blockStatus: number;
  bytesRead: number;
  bytesWritten: number;
  /** Requests answered with an error. */
  errors: number;
  /** Consistency points that committed changes. */
  consistencyPoints: number;
}

/**
 * Blocks the shadow snapshot `view` serves had reused (0 for the active file system, a
 * regular snapshot, or a shadow whole so far). A shadow with reused blocks is refused
 * when offered, so a count here grew while it was served.
 */
export function reusedSinceOffered(vol: Volume, view: ExportView): number {
  if (view.snapshot === null) return 0;
  try {
    const e = vol.snapshot(view.snapshot);
    return e.shadow ? e.reusedBlocks : 0;
  } catch {
    return 0; // pinned while served: not deleted or renamed under it
  }
}

/** A server's exports by name: the main one, and snapshot exports added while it serves. */
export class ExportViews {
  private readonly extra = new Map<string, ExportView>();
  /** Exports whose shadow snapshot lost blocks while served, said once each. */
  private readonly lostSaid = new WeakSet<ExportView>();

  constructor(private readonly vol: Volume, readonly main: ExportView, private readonly report: (message: string) => void) {}

  /** The export a client asking for `name` gets: the empty name is the main one. */
  find(name: string): ExportView | undefined {
    if (name === '' || name === this.main.name) return this.main;
    return this.extra.get(name);
  }

  /** Every export's name, the main one first. */
  names(): string[] {
    return [this.main.name, ...this.extra.keys()];
  }

  /** Adds a read-only export of `snapshot` named `name`. */
  add(name: string, snapshot: string): ExportView {
    if (name === '' || this.find(name)) throw new ExistsError(`${this.vol.path}: an export named "${name}" is already served`, 'choose another --export-name');
    const map = this.vol.mapOf(snapshot);
    const view: ExportView = { name, snapshot, readOnly: true, size: this.main.size, map, description: describeExport(this.vol, snapshot, true), closed: false };
    this.extra.set(name, view);
    return view;
  }

  /** Removes an export add() made; its open connections get ESHUTDOWN from now on. */
  remove(name: string): void {
    const view = this.extra.get(name);
    if (!view) return;
    view.closed = true;
    this.extra.delete(name);
  }

  /**
   * True for the export of a shadow snapshot that had blocks reused since it was offered
   * (a shadow's blocks stay free to the allocator, and this server's writes take them): its
   * map and data are no longer the snapshot's, so its reads and block status get EIO, never
   * other data. Exact at a request's turn: nothing changes the volume while a read runs.
   */
  lost(view: ExportView): boolean {
    const reused = reusedSinceOffered(this.vol, view);
    if (reused === 0) return false;
    if (!this.lostSaid.has(view)) {
      this.lostSaid.add(view);
      this.report(`export "${view.name}": shadow snapshot "${view.snapshot}" had ${reused} blocks reused by writes while served and no longer holds a consistent image: its reads and block status get EIO (serve a regular snapshot to read it while the volume is written)`);
    }
    return true;
  }
}

/** What `nbdinfo` shows as an export's description. */
export function describeExport(vol: Volume, snapshot: string | null, readOnly: boolean): string {
  return `imgstream volume ${vol.path}${snapshot !== null ? ` (snapshot ${snapshot})` : ''}${readOnly ? ', read-only' : ''}`;
}
