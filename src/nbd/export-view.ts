// What a connection sees of a server once it has chosen: the export it selected (the
// main one or a snapshot export), what it negotiated, and the counts a server reports.
import type { LogicalMap } from '../volume/logical-map.js';
import type { MetaContext } from './meta-context.js';

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
