// What a connection sees of a server once it has chosen: the export it selected (the
// main one or a snapshot export), what it negotiated, and the counts a server reports.
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
