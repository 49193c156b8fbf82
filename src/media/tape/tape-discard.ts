// What a failed or aborted dump leaves on its tapes, removed: the tape file being written,
// the tape files it closed or published, and the directories it made for new tapes
// (--new-tape) once they are empty again, so a refused dump leaves no trace.
import fs from 'node:fs';
import { type MadeDirectory, removeMadeDirectory } from './tape-directory.js';
import type { TapeFileWriter } from './tape-file-writer.js';

export interface OpenTapeFileTrace {
  writer: TapeFileWriter;
  fd: number;
  /** Directory tapes: the partial file being written. */
  partial: string | null;
}

export interface ClosedTapeFileTrace {
  partial: string | null;
  published: string | null;
}

/** Removes what it can of `open`, `closed` and the directories in `made` (never throws). */
export function discardTapeFiles(open: OpenTapeFileTrace | null, closed: ClosedTapeFileTrace[], made: MadeDirectory[]): void {
  if (open) {
    open.writer.destroy();
    try {
      fs.closeSync(open.fd);
    } catch {
      /* already closed */
    }
    removeFile(open.partial);
  }
  for (const c of closed) {
    removeFile(c.partial);
    removeFile(c.published);
  }
  // deepest first: a later tape may have been made inside an earlier one
  for (const m of [...made].reverse()) removeMadeDirectory(m);
}

function removeFile(p: string | null): void {
  try {
    if (p) fs.rmSync(p, { force: true });
  } catch {
    /* nothing more to do */
  }
}
