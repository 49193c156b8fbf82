// How mirror commands print an update run: one line per transfer, so a run that finished
// a transfer an earlier run left part way, then brought the destination to now, says so.
import type { MirrorRun } from '../../src/mirror/run.js';
import type { MirrorResult } from '../../src/mirror/sender.js';
import { formatSize } from '../../src/core/size.js';

export function transferLine(volume: string, r: MirrorResult): string {
  if (r.upToDate && r.transferId === '') return `${r.destination} is up to date (${r.top})`;
  if (r.upToDate) return `${r.destination} is up to date (${r.top}): no block changed, ${formatSize(r.bytes)} sent, CP ${r.generation}`;
  const resumed = r.resumedRecords ? `, resumed after ${r.resumedRecords} records (${formatSize(r.totalBytes)} sent by every attempt)` : '';
  const zstd = r.compression === 'zstd' && r.dataBytes > 0 ? ` (zstd, ${formatSize(r.dataBytes)} of blocks)` : '';
  return `${volume} -> ${r.destination}: ${r.resumedTransfer ? 'finished the ' : ''}${r.mode} transfer to ${r.top}: ${r.blocks} blocks, ${formatSize(r.bytes)} sent${zstd}${resumed}, ${r.deallocated} blocks deallocated, CP ${r.generation} (${(r.durationMs / 1000).toFixed(1)}s)`;
}

export function runLines(volume: string, run: MirrorRun): string[] {
  // a stopped transfer the destination could not resume (the mirror moved, deleted, replaced) is said before what the run did instead
  return run.transfers.flatMap((t) => [...(t.discarded ? [`${t.destination}: ${t.discarded}`] : []), transferLine(volume, t)]);
}
