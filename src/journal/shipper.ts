// `imgstream protect`: ships a volume's write journal to a protection destination as it
// grows. Records are cut into intervals on boundaries that are multiples of the interval
// (and at every snapshot taken on the source); an interval is shipped once a record past
// its boundary appears, or once the boundary is `GRACE_MS` old with nothing newer. A
// record found after its interval was shipped (its server stalled between stamp and write)
// goes into the next one: its reply left after the point that was claimed. After
// the destination acknowledges an interval, shipped.json says how far it holds the
// journal, and the server deletes segments before that point.
//
// The first transfer is a seed (the whole mapped disk at a journal position); after an
// overflow (the journal dropped records a destination never had) the next transfer is a
// resync: the blocks changed since the last acknowledged record, read from a snapshot (all
// of them when the journal no longer tells: trimmed for another destination, moved aside).
// One protect at a time ships a journal (it holds the journal directory's lock).
import { CorruptError, ImgstreamError, InvalidInputError, NotFoundError } from '../core/errors.js';
import { DAMAGED_HINT, lastRecordAndDamage } from './journal-recovery.js';
import fs from 'node:fs';
import type { DestinationState, ProtectDestination, ProtectedSource, ShippedInterval, SnapshotRename } from './destination-api.js';
import { IntervalBuilder, SegmentDroppedError, SlabPool } from './interval-builder.js';
import { journalDirOf, journalIdentity, listSegments, readDirty, readShipped, writeShipped } from './journal-files.js';
import { loadDirtyBlocks } from './dirty-blocks.js';
import { JournalReader } from './journal-reader.js';
import { RecordKind, parseMarker } from './record.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { idleResyncImage, localImage, servedImage, volumeIdentity, type SourceImage } from './source-image.js';
import { UnjournaledChange } from './unjournaled-change.js';

/** How long after a boundary an interval waits for records stamped before it (written by then: the server writes a record before its reply). */
const GRACE_MS = 250;
const IDLE_POLL_MS = 50;
/** Records read between two turns of the event loop while an interval is in flight. */
const YIELD_RECORDS = 256;
/** An idle shipper moves the destination's window forward at most this often (see ProtectDestination.quiet). */
const MIN_QUIET_MS = 1000;
/** How often a quiet time claimed is recorded in the journal's shipped.json (for its status's lag). */
const QUIET_MARK_MS = 10_000;

export interface ProtectOptions {
  volume: string;
  destination: ProtectDestination;
  intervalMs: number;
  /** History the destination keeps; null: what it kept (24 h when new). */
  keepMs: number | null;
  signal: AbortSignal;
  /** Stop once the journal is shipped up to its end (tests, and `--once`). */
  once?: boolean;
}

/** One event for the log (`--json` prints each as a line). */
export type ProtectEvent =
  | { event: 'seed'; blocks: number; bytes: number; journalTo: number; time: string }
  | { event: 'interval'; seq: number; kind: 'journal' | 'resync'; start: string; end: string; blocks: number; bytes: number; records: number; recordBytes: number; snapshots: string[]; renames?: SnapshotRename[]; journalTo: number; lagMs: number; bytesPerSecond: number }
  | { event: 'waiting'; reason: string }
  | { event: 'retention'; keepMs: number; keptMs: number }
  | { event: 'overflow'; after: number; blocks: number; full: boolean; lostSnapshots: string[]; reason?: string }
  | { event: 'damaged'; seq: number; what: string; blocks: number; base?: true };

export interface ProtectSummary {
  intervals: number;
  seeded: boolean;
  resyncs: number;
  bytes: number;
  journalTo: number;
  window: DestinationState['window'];
}

/** Longest wait between two attempts to reach a destination that is down. */
const MAX_RETRY_MS = 10_000;
/** Longest wait between two attempts to store an interval at a destination that is full (each attempt writes until it fails). */
const MAX_FULL_RETRY_MS = 30_000;

/** Whether `err` says the destination's file system is full (here, or on its daemon: the same words come over the wire). */
export function destinationFull(err: unknown): boolean {
  return err instanceof ImgstreamError && err.code === 'io' && /: (no space left on the device|disk quota exceeded) while /.test(err.message);
}

export async function protect(opts: ProtectOptions, report: (e: ProtectEvent) => void): Promise<ProtectSummary> {
  const source = await sourceOf(opts.volume); // a missing volume is named as such first
  const dir = journalDirOf(opts.volume);
  if (!fs.existsSync(dir)) throw new NotFoundError(`${opts.volume}: has no write journal (${dir})`, `serve it with: imgstream serve nbd ${opts.volume} --journal`);
  // one shipper per journal: two would trim it for each other (a destination left behind then needs a full resync)
  const lock = VolumeLock.acquire(dir, fs.statSync(dir), 'write journal');
  try {
    return await shipAll(opts, dir, source, report);
  } finally {
    lock.release();
  }
}

async function shipAll(opts: ProtectOptions, dir: string, source: ProtectedSource, report: (e: ProtectEvent) => void): Promise<ProtectSummary> {
  const sum: ProtectSummary = { intervals: 0, seeded: false, resyncs: 0, bytes: 0, journalTo: 0, window: null };
  // the link going down (or the peer restarting) is waited out, and so is a destination
  // whose file system filled up (until space is freed there): the journal keeps what is
  // not shipped, up to --journal-size, then tracks the changed blocks for a resync
  let wait = 500;
  let stored = true; // the last attempt stored something (a full destination's wait is not reset by merely reaching it)
  for (;;) {
    try {
      await session(opts, dir, source, sum, report, () => {
        if (stored) wait = 500;
      }, () => {
        stored = true;
        wait = 500;
      });
      return sum;
    } catch (err) {
      if (err instanceof SegmentDroppedError && !opts.signal.aborted) {
        // an overflow deleted records an interval still needed: the next session starts from the destination's state (and finds the gap)
        report({ event: 'waiting', reason: `${err.message}: starting again from what ${opts.destination.description} holds` });
        continue;
      }
      const full = destinationFull(err);
      if (!(err instanceof ImgstreamError) || !(err.code === 'network' || full) || opts.signal.aborted || opts.once) throw err;
      stored = !full;
      const retry = `retrying in ${Math.round(wait / 1000)} s`;
      report({ event: 'waiting', reason: full ? `${opts.destination.description} is full (${err.message}): free space there, or shorten --keep; ${retry}` : `${opts.destination.description} is unreachable (${err.message}); ${retry}` });
      await sleep(wait, opts.signal);
      wait = Math.min(wait * 2, full ? MAX_FULL_RETRY_MS : MAX_RETRY_MS);
      if (opts.signal.aborted) return sum;
    }
  }
}

/** One connection's worth of shipping: until stopped, or the destination fails. */
async function session(opts: ProtectOptions, dir: string, source: ProtectedSource, sum: ProtectSummary, report: (e: ProtectEvent) => void, reached: () => void, storedOne: () => void): Promise<void> {
  const dest = opts.destination;
  // the journal's identity (a destination fed from another journal refuses this one) and its end (see ProtectedSource)
  const { last, damage } = lastRecordAndDamage(dir);
  const journalDamage = damage ? { journalDamage: `${damage.segment}: a damaged record at byte ${damage.offset}, with ${damage.bytes} bytes after it` } : {};
  const identity = journalIdentity(dir);
  let state = await dest.open({ ...source, journalId: identity.id, journalIdWas: identity.was, journalLast: last, ...journalDamage }, opts.keepMs);
  reached();
  if (state.keepWas != null && state.keepMs !== undefined) report({ event: 'retention', keepMs: state.keepMs, keptMs: state.keepWas });
  if (state.seeded && last < state.journalTo) {
    // the journal ends before what the destination holds: damaged records (more than a torn last one) are named as damage
    if (damage) throw new CorruptError(`${damage.segment}: a damaged record at byte ${damage.offset}, with ${damage.bytes} bytes after it (the destination holds records up to ${state.journalTo})`, DAMAGED_HINT);
    throw new InvalidInputError(
      `${dir} ends at record ${last}, but ${dest.description} holds records up to ${state.journalTo}: this journal is not the one the destination was fed from (moved aside, or started over)`,
      'protect to a new destination',
    );
  }
  sum.journalTo = state.journalTo;
  sum.window = state.window;
  // a session that fails closes what it reads the journal with (the next one opens its own)
  let closeReading = (): void => {};
  try {
    const seededNow = !state.seeded;
    if (seededNow) {
      state = await seed(opts, dir, dest, report);
      sum.seeded = true;
    }
    let reader = new JournalReader(dir, state.journalTo + 1, { damageAtTail: 'throw' });
    // (the journal's last CP marker up to what the destination holds, or, trimmed away, the one shipped.json kept)
    let outside = seededNow ? UnjournaledChange.fromDisk(opts.volume, dir) : UnjournaledChange.fromJournal(opts.volume, dir, state.journalTo, readShipped(dir)?.cp);
    let lastEnd = state.window?.end ?? Date.now();
    const slabs = new SlabPool();
    let builder = new IntervalBuilder(source.blockSize, state.journalTo, slabs);
    closeReading = () => {
      builder.release();
      reader.close();
    };
    // what the destination acknowledged, for the server's trimming, status, and the next session
    const markShipped = (end: number): void => writeShipped(dir, { journalTo: state.journalTo, intervalSeq: state.intervalSeq, end, destination: dest.description, ...(outside.marker !== null ? { cp: outside.marker } : {}) });
    const ship = async (iv: ShippedInterval, records: number, recordBytes: number, firstTime: number | null, dataBytes?: number): Promise<void> => {
      const t0 = Date.now();
      let bytes = dataBytes ?? 0;
      state = await dest.append(dataBytes === undefined ? { ...iv, blocks: countBytes(iv.blocks, (n) => (bytes += n)) } : iv);
      const secs = Math.max((Date.now() - t0) / 1000, 0.001);
      markShipped(iv.end);
      sum.intervals++;
      storedOne();
      sum.bytes += bytes;
      sum.journalTo = state.journalTo;
      sum.window = state.window;
      report({ event: 'interval', seq: iv.seq, kind: iv.kind, start: iso(iv.start), end: iso(iv.end), blocks: iv.blockCount, bytes, records, recordBytes, snapshots: iv.snapshots, ...(iv.renames?.length ? { renames: iv.renames } : {}), journalTo: iv.journalTo, lagMs: firstTime === null ? 0 : Math.max(0, Date.now() - firstTime), bytesPerSecond: Math.round(bytes / secs) });
    };
    // One interval travels while the next is read and collected (the journal read during
    // a transfer is not waiting for it afterwards): at most one in flight, acknowledged in
    // order. Whatever needs the destination's answer (a resync, a quiet time, stopping)
    // waits for it first (settle); a failed transfer ends the session, and the next one
    // reads the journal again from what the destination holds.
    let inFlight: Promise<void> | null = null;
    let shipFailure: { err: unknown } | null = null;
    let claimedSeq = state.intervalSeq;
    const throwIfFailed = (): void => {
      if (shipFailure) throw shipFailure.err;
    };
    const settle = async (): Promise<void> => {
      const p = inFlight;
      inFlight = null;
      if (p) await p;
      throwIfFailed();
    };
    const close = async (end: number, snapshots: string[]): Promise<void> => {
      const b = builder;
      builder = new IntervalBuilder(source.blockSize, b.journalTo, slabs);
      // the next after the destination's last, or after the one still in flight
      claimedSeq = inFlight === null ? state.intervalSeq + 1 : claimedSeq + 1;
      const iv = b.build(claimedSeq, lastEnd, end, snapshots);
      // the point is claimed now: a record stamped before it and read from here on goes into the next interval
      lastEnd = end;
      const prev = inFlight;
      inFlight = (async () => {
        try {
          if (prev) await prev;
          if (!shipFailure) await ship(iv, b.records, b.recordBytes, b.firstTime, b.dataBytes);
        } catch (err) {
          shipFailure ??= { err };
        } finally {
          b.release();
        }
      })();
      // the one before this one is acknowledged before more is collected
      if (prev) await prev;
      throwIfFailed();
    };
    // a quiet time claimed: the journal's status dates its lag from it too (after an overflow the
    // dropped writes' times are gone: they came after it), at most every QUIET_MARK_MS
    let quietMarked = 0;
    const claimQuiet = async (quietTo: number): Promise<void> => {
      state = await dest.quiet(quietTo);
      lastEnd = quietTo;
      sum.window = state.window;
      if (Date.now() - quietMarked >= QUIET_MARK_MS || opts.once) {
        markShipped(quietTo);
        quietMarked = Date.now();
      }
    };
    let sinceYield = 0;
    const boundaryAfter = (t: number): number => (Math.floor(t / opts.intervalMs) + 1) * opts.intervalMs;
    let waitingSaid = false;
    /** The writer without a journal last reported as holding the volume. */
    let heldSaid: number | null = null;
    let idle = true; // check for dropped records at the start and whenever the journal has nothing new
    let overflowSeen = false; // an OVERFLOW record read: what follows lacks the data of writes, a resync must come first
    while (!opts.signal.aborted) {
      // nothing to read: the interval in flight is waited for (what follows reads the destination's state)
      if (idle || overflowSeen || state.damage?.wholeDiskWanted) await settle();
      else throwIfFailed();
      // a damaged interval at the destination: its points and later ones rebuild again from a full resync
      const wantWhole = state.damage?.wholeDiskWanted === true;
      if (overflowSeen || wantWhole || (idle && needsResync(reader, dir, state))) {
        // (--once on a volume nobody serves resyncs from it itself: see idleResyncImage)
        const img = (await servedImage(opts.volume, 'journal.resync')) ?? (opts.once ? idleResyncImage(opts.volume) : null);
        if (img === null) {
          const needs = opts.once ? 'the volume, which another imgstream process holds without serving it with --journal' : 'the volume served with --journal';
          if (!waitingSaid) report({ event: 'waiting', reason: wantWhole ? `the destination's ${state.damage!.base ? 'base volume' : `interval ${state.damage!.seq}`} is damaged: the full resync that makes its points rebuild again needs ${needs}` : `the journal dropped records the destination lacks: a resync needs ${needs}` });
          waitingSaid = true;
          if (opts.once) break;
          await sleep(500, opts.signal);
          continue;
        }
        waitingSaid = false;
        try {
          // the changed blocks are known from the destination's last record on, or not at all:
          // the journal was trimmed past it for another destination, or moved aside. Then every
          // block goes (unmapped ones as zeros), never a list that misses changes
          const dirty = readDirty(dir);
          // (dirty.bits lost or damaged: every block too)
          const changed = !wantWhole && dirty !== null && dirty.after <= state.journalTo ? loadDirtyBlocks(dir, dirty) : null;
          const known = dirty !== null && changed !== null;
          const { count, entries, blocks } = changed !== null ? img.blocksOf(changed) : img.allBlocks();
          // the renames among the records the resync passes over (those the destination lacks): it carries them
          const renames = dirty !== null && dirty.after <= state.journalTo ? (dirty.renames ?? []).filter((r) => r.seq > state.journalTo).map(({ from, to }) => ({ from, to })) : [];
          // snapshots taken while records were dropped: the resync brings the disk as of now, not as of them
          if (wantWhole) report({ event: 'damaged', seq: state.damage!.seq, what: state.damage!.what, blocks: count, ...(state.damage!.base ? { base: true as const } : {}) });
          else report({ event: 'overflow', after: state.journalTo, blocks: count, full: !known, lostSnapshots: known ? (dirty.snapshots ?? []) : [], ...(known && dirty.reason ? { reason: dirty.reason } : {}) });
          const end = Math.max(img.time, lastEnd);
          await ship({ seq: state.intervalSeq + 1, start: lastEnd, end, journalFrom: state.journalTo, journalTo: img.journalTo, kind: 'resync', snapshots: [], ...(renames.length ? { renames } : {}), blockCount: count, entries, blocks }, 0, 0, lastEnd); // its changes waited since the destination's last point
          lastEnd = end;
          sum.resyncs++;
        } finally {
          img.close();
        }
        reader.close();
        reader = new JournalReader(dir, state.journalTo + 1, { damageAtTail: 'throw' });
        builder.release();
        builder = new IntervalBuilder(source.blockSize, state.journalTo, slabs);
        overflowSeen = false;
        outside = UnjournaledChange.fromDisk(opts.volume, dir);
        continue;
      }
      // what a point claims rests on this moment: a record not yet written now has its reply still to go
      const readAt = Date.now();
      const rec = reader.next();
      idle = rec === null;
      // a record stamped before the newest recovery point was written after it was claimed
      // (its server stalled longer than GRACE_MS between stamp and write): its reply left after
      // that point, so the write belongs to the next interval (as if acknowledged then)
      if (rec !== null && rec.time < lastEnd) rec.time = lastEnd;
      if (rec !== null) outside.saw(rec);
      if (rec === null) {
        // nothing new: close the open interval once its boundary has passed with time to spare
        if (builder.firstTime !== null && readAt >= boundaryAfter(builder.firstTime) + GRACE_MS) await close(boundaryAfter(builder.firstTime), []);
        // all shipped, and the disk no longer as the journal's last CP left it: no point is claimed past it (a CP's marker may be on its way; a lasting difference ends the session)
        // (--once claims no quiet point: a writer holding the volume does not keep it waiting)
        else if (builder.firstTime === null && inFlight === null && outside.differs(readAt) && !(opts.once && outside.heldBy !== null)) {
          if (outside.heldBy !== null && outside.heldBy !== heldSaid) report({ event: 'waiting', reason: `${opts.volume} is open for writing by imgstream process ${outside.heldBy}, which does not journal its writes: no recovery point is claimed while it is` });
          heldSaid = outside.heldBy;
          await sleep(IDLE_POLL_MS, opts.signal);
        }
        else if (opts.once && builder.firstTime === null && inFlight === null) {
          // all shipped: a run from cron claims the quiet time since, as a running shipper does
          // (not while the disk differs from its journal: a writer without one holds the volume)
          const quietTo = Math.floor((readAt - GRACE_MS) / opts.intervalMs) * opts.intervalMs;
          if (quietTo >= lastEnd + Math.max(opts.intervalMs, MIN_QUIET_MS) && !outside.differs(readAt) && !needsResync(reader, dir, state)) {
            await claimQuiet(quietTo);
          }
          break;
        }
        else if (inFlight !== null) continue; // settled at the top of the loop
        else {
          // nothing written since the last interval: the destination answers for up to the last boundary passed
          // (a record stamped before it is read by now, as when an interval closes), once per interval
          const quietTo = Math.floor((readAt - GRACE_MS) / opts.intervalMs) * opts.intervalMs;
          if (builder.firstTime === null && quietTo >= lastEnd + Math.max(opts.intervalMs, MIN_QUIET_MS) && !needsResync(reader, dir, state)) {
            await claimQuiet(quietTo);
          } else await sleep(IDLE_POLL_MS, opts.signal);
        }
        continue;
      }
      if (builder.firstTime !== null && rec.time >= boundaryAfter(builder.firstTime)) await close(boundaryAfter(builder.firstTime), []);
      if (rec.kind === RecordKind.Overflow) {
        // the server dropped records from here back to the last one shipped: the resync sends their blocks (and later ones)
        builder.release();
        builder = new IntervalBuilder(source.blockSize, state.journalTo, slabs);
        overflowSeen = true;
        continue;
      }
      if (rec.kind === RecordKind.Snapshot) {
        builder.add(rec);
        await close(Math.max(rec.time, lastEnd), [parseMarker<{ name: string }>(rec).name]);
        continue;
      }
      builder.add(rec);
      // a transfer in flight goes on while records are read (its socket writes need the event loop)
      if (inFlight !== null && ++sinceYield >= YIELD_RECORDS) {
        sinceYield = 0;
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
    }
    // SIGTERM: the interval in flight is acknowledged (or fails) first; what is collected but not shipped stays in the journal for the next run
    await settle();
    if (quietMarked > 0) markShipped(lastEnd);
    reader.close();
    sum.journalTo = state.journalTo;
    sum.window = state.window;
  } finally {
    closeReading();
    await dest.close().catch(() => {});
  }
}

async function sourceOf(volume: string): Promise<ProtectedSource> {
  return { ...(await volumeIdentity(volume)), path: volume };
}

/** The first transfer: the whole mapped disk at a journal position. */
async function seed(opts: ProtectOptions, dir: string, dest: ProtectDestination, report: (e: ProtectEvent) => void): Promise<DestinationState> {
  let img: SourceImage | null = await servedImage(opts.volume, 'journal.seed');
  img ??= localImage(opts.volume, lastCpMarker(dir));
  try {
    const { count, blocks } = img.mappedBlocks();
    let bytes = 0;
    const state = await dest.seed({ journalTo: img.journalTo, time: img.time, blockCount: count, blocks: countBytes(blocks, (n) => (bytes += n)) });
    writeShipped(dir, { journalTo: state.journalTo, intervalSeq: 0, end: img.time, destination: dest.description });
    report({ event: 'seed', blocks: count, bytes, journalTo: img.journalTo, time: iso(img.time) });
    return state;
  } finally {
    img.close();
  }
}

/** The sequence number of the journal's last intact record (that of the last one dropped, when none is left). */
/** The last CP marker in the journal (0: none): a volume not served holds every record up to it. */
function lastCpMarker(dir: string): number {
  const segs = listSegments(dir);
  if (segs.length === 0) return readDirty(dir)?.upTo ?? 0;
  const r = new JournalReader(dir, segs[0].firstSeq);
  let last = segs[0].firstSeq - 1;
  try {
    for (let rec = r.next(); rec !== null; rec = r.next()) if (rec.kind === RecordKind.Cp || rec.kind === RecordKind.Open) last = rec.seq;
  } finally {
    r.close();
  }
  if (readDirty(dir) !== null) throw new InvalidInputError(`${dir}: overflowed while no destination was seeded`, 'serve the volume with --journal so protect can take a seed snapshot');
  return last;
}

/** The destination lacks records the journal no longer has (dropped at an overflow, or a journal moved aside). */
function needsResync(reader: JournalReader, dir: string, state: DestinationState): boolean {
  if (reader.gap()) return true;
  const segs = listSegments(dir);
  if (segs.length === 0) return readDirty(dir) !== null && readDirty(dir)!.after <= state.journalTo;
  return false;
}

async function* countBytes<T extends { data: Buffer | null }>(src: AsyncIterable<T> | Iterable<T>, add: (n: number) => void): AsyncGenerator<T> {
  for await (const b of src) {
    if (b.data) add(b.data.length);
    yield b;
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}
