// dump VOL1 VOL2 ... --multiplex: one dump per volume, all at once, each planned from the
// catalog as a dump on its own would be (its level's base, its snapshot), each writing
// its stream through a channel of one MultiplexTapeWriter. A source that fails fails its
// stream only: the others complete, are published and recorded.
import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { ImgstreamError, UsageError, errorOfCode, stoppedBy } from '../core/errors.js';
import { stopSignal, untilStopped } from '../stream/interruption.js';
import { saveBackupLog } from '../catalog/backup-logs.js';
import { LEFT_BEHIND, MultiplexTapeWriter, type MultiplexTapeOptions, type MultiplexOutcome } from '../media/tape/index.js';
import { noProgress, type Progress } from '../core/progress.js';
import { dumpVolumeAt } from '../stream/dump-at.js';
import type { DumpOptions, DumpResult } from '../stream/dump.js';

export type MultiplexTape = Omit<MultiplexTapeOptions, 'id' | 'sources'>;

export interface MultiplexSourceResult {
  volume: string;
  ok: boolean;
  dump?: DumpResult;
  error?: { code: string; message: string; hint?: string };
}

export interface MultiplexDumpResult {
  /** The multiplexed dump's id (its tape files' multiplex and log members). */
  id: string;
  sources: MultiplexSourceResult[];
  /** Its tape files (none when every source failed). */
  files: Array<{ tape: string; number?: number; sequence: number }>;
  /** Where the catalog keeps its backup log. */
  logFile: string | null;
  /** Time the tape waited for data, and the time it was written, over all its tape files. */
  idleMs: number;
  elapsedMs: number;
}

/**
 * Dumps `volumes` concurrently onto one multiplexed tape file per tape. Resolves when the
 * tape files are published and every complete stream is recorded, whether or not some
 * sources failed (see each source's result); rejects when the tape fails or no source
 * completed.
 */
export async function multiplexDump(volumes: string[], tape: MultiplexTape, opts: Omit<DumpOptions, 'dryRun'>, progress: Progress = noProgress): Promise<MultiplexDumpResult> {
  if (volumes.length < 2) throw new UsageError('--multiplex needs at least two volumes', 'give the volumes to dump together: dump VOL1 VOL2 ... --multiplex');
  const seen = new Map<string, string>();
  for (const v of volumes) {
    // the same file by another name (a symbolic link, ./a.vol) too
    let key = path.resolve(v);
    try {
      key = fs.realpathSync(v);
    } catch {
      // not there: its dump fails alone, naming it
    }
    const other = seen.get(key);
    if (other !== undefined) throw new UsageError(other === v ? `volume ${v} is given twice` : `volumes ${other} and ${v} are the same volume`, 'give each volume once');
    seen.set(key, v);
  }
  const id = randomUUID();
  // the backup log names each volume by its absolute path: `--volume PATH` finds it from any directory
  const writer = new MultiplexTapeWriter({ ...tape, id, sources: volumes.map((v) => path.resolve(v)) });
  // one dump at a time writes to a tape (tape-locks.ts): wait here, before any snapshot is taken
  try {
    await untilStopped(writer.lockTapes(), opts.signal);
  } catch (err) {
    writer.abandon('stopped before it started');
    const by = stopSignal(opts.signal);
    if (by) throw stoppedBy(by, `multiplexed dump stopped by ${by} while it waited for the tape: nothing was written or recorded`);
    throw err;
  }
  // the sources share the compression threads
  const threads = opts.threads === 0 ? 0 : Math.max(1, Math.floor(opts.threads / volumes.length));
  const shared = sharedProgress(progress, `dumping ${volumes.length} volumes`, volumes.length);
  const runs = volumes.map((vol, i) =>
    dumpVolumeAt(vol, (streamId, v) => writer.channel(i, streamId, { ...v, path: path.resolve(v.path) }), { ...opts, threads }, shared[i]).catch((err: unknown) => {
      writer.sourceFailed(i, (err as Error).message);
      throw err;
    }),
  );
  const settled = await Promise.allSettled(runs);
  let outcome: MultiplexOutcome;
  try {
    outcome = await writer.done();
  } catch (err) {
    progress.stop();
    // nothing was published: say why each source failed when that is the cause
    // a message that names its volume already is not prefixed again
    // a stopped source's parts were to stay behind an aborted member: nothing was published after all
    const failures = settled.map((s, i) => (s.status === 'rejected' ? named(volumes[i], (s.reason as Error).message.replace(LEFT_BEHIND, 'nothing of it was left on the tape')) : null)).filter((x) => x !== null);
    // the tape failed (full, an I/O error): every source failed of it, say it once
    const ofTape = settled.every((s) => s.status === 'rejected' && (s.reason as Error).message === (err as Error).message);
    if (err instanceof ImgstreamError && failures.length === volumes.length && !ofTape) {
      const first = settled.find((s) => s.status === 'rejected') as PromiseRejectedResult;
      const code = first.reason instanceof ImgstreamError ? first.reason.code : err.code;
      throw errorOfCode(code, `multiplexed dump: every source failed: ${failures.join('; ')}`, 'nothing was written to the tape');
    }
    throw err;
  }
  progress.stop();
  const logFile = saveBackupLog(opts.catalog, { id, files: outcome.files });
  const sources: MultiplexSourceResult[] = settled.map((s, i) => {
    if (s.status === 'fulfilled') return { volume: volumes[i], ok: true, dump: s.value };
    const e = s.reason as Error;
    return { volume: volumes[i], ok: false, error: e instanceof ImgstreamError ? { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) } : { code: 'internal', message: e.message } };
  });
  let idleMs = 0;
  let elapsedMs = 0;
  for (const f of outcome.files) {
    idleMs += f.log.header.idleMs;
    elapsedMs += Date.parse(f.log.header.finished) - Date.parse(f.log.header.started);
  }
  return { id, sources, files: outcome.files.map(({ tape: t, number, sequence }) => ({ tape: t, ...(number !== undefined ? { number } : {}), sequence })), logFile, idleMs, elapsedMs };
}

/** One progress per source, shown as one bar: the bytes of every source's image, and how many of them are done. */
function sharedProgress(progress: Progress, label: string, n: number): Progress[] {
  const totals = new Array<number>(n).fill(0);
  const done = new Array<number>(n).fill(0);
  let shown = false;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  return totals.map((_, i) => ({
    start(_label: string, total: number) {
      totals[i] = total;
      done[i] = 0;
      if (shown) progress.stop(); // a source more: the bar starts again with the larger total
      progress.start(label, sum(totals), 'bytes');
      shown = true;
      progress.update(sum(done));
    },
    update(d: number) {
      done[i] = d;
      if (shown) progress.update(sum(done));
    },
    stop() {
      done[i] = totals[i];
      if (shown) progress.update(sum(done));
    },
  }));
}

function named(volume: string, message: string): string {
  return message.startsWith(`${volume}: `) ? message : `${volume}: ${message}`;
}
