// Dump: a storage image of a volume written as an image stream, with BSD dump levels.
// The base of a level-N dump is the most recent complete dump of this volume at any
// lower level (from the catalog); its image is the sum of the snapshots taken after that
// base's top snapshot up to the chosen one, minus the base's top snapshot. Level 0 is the
// sum of every snapshot up to the chosen one. Only the blocks sent are read.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { BusyError, errorOfCode, ExistsError, ImgstreamError, InvalidInputError, IoError, NotFoundError, stoppedBy, withLeftBehind, type StopSignal } from '../core/errors.js';
import { type MapDelta, type StreamHeader, type StreamSnapshot } from '../format/image-stream.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { evaluateImage, parseExpression, resolveExpression, type StorageImageSummary } from '../image/index.js';
import type { MediaPosition, StreamTarget } from '../media/medium.js';
import { noProgress, type Progress } from '../core/progress.js';
import { isSnapshotOf, type Catalog, type DumpRecord } from '../catalog/catalog.js';
import { ownRecords } from '../catalog/copies.js';
import { uuidOfVolumeAt } from '../volume/volume-uuid.js';
import type { Volume } from '../volume/volume.js';
import { checkCarriedMaps, collectMapDeltas } from '../volume/map-deltas.js';
import { SparseBitmap } from '../volume/sparse-bitmap.js';
import { ImageStreamWriter } from './stream-writer.js';
import type { KeySource } from '../crypt/index.js';
import { writePlanes, imageMembers, writeMapDeltas, writeBlocks } from './dump-records.js';
import { parseOrder } from './order.js';
import { stopSignal, throwIfStopped, untilStopped } from './interruption.js';
import { pausePoint } from '../volume/crash-point.js';

export interface DumpOptions {
  level: number;
  /** Top snapshot; when absent a new snapshot is taken (not for a dry run). */
  snapshot?: string;
  order: string;
  compression: StreamHeader['compression'];
  threads: number;
  catalog: Catalog;
  dryRun?: boolean;
  /** Encrypt the stream with this key (crypt/). */
  key?: KeySource | null;
  /** Stops the dump (its reason: 'SIGINT' or 'SIGTERM'): its output is discarded and its snapshot deleted. */
  signal?: AbortSignal;
}

export interface DumpPlan {
  level: number;
  base: SnapshotEntry | null;
  baseDump: DumpRecord | null;
  top: SnapshotEntry | null;
  snapshots: SnapshotEntry[];
  expression: string;
}

export interface DumpResult {
  streamId: string | null;
  dryRun: boolean;
  level: number;
  base: string | null;
  top: string;
  snapshots: string[];
  expression: string;
  blocks: number;
  bytes: number;
  extents: number;
  /** Map blocks of the image sent as differences from the base (MAPDELTA records). */
  mapDeltaBlocks: number;
  streamBytes: number;
  sha256: string | null;
  media: MediaPosition | null;
  /** false: written to a device that keeps nothing (/dev/null), so not recorded in the catalog. */
  recorded?: false;
  /** Not recorded, and the snapshot the dump took for it deleted (one named with --snapshot stays). */
  snapshotDeleted?: string;
}

/**
 * A dump's file target that keeps nothing (/dev/null, /dev/zero, /dev/full: Linux's memory
 * devices, major 1), given as a file or as a tape (`tape:/dev/null`), or stdout redirected
 * to one (`--to - > /dev/null`): nothing can be read back from it. A tape drive given as a file is a character device too, and keeps its data.
 */
function keepsNothing(at: MediaPosition): boolean {
  const memoryDevice = (st: fs.Stats) => st.isCharacterDevice() && ((st.rdev >> 8) & 0xfff) === 1;
  try {
    if (at.kind === 'stdout') return memoryDevice(fs.fstatSync(1));
    if (at.kind === 'file') return memoryDevice(fs.statSync(at.location));
    // tape:/dev/null, or a tape set with it among its tapes: a part of the stream is gone
    return at.kind === 'tape' && (at.tapes ?? [at.location]).some((t) => {
      const st = fs.statSync(t, { throwIfNoEntry: false });
      return st !== undefined && memoryDevice(st);
    });
  } catch {
    return false;
  }
}

/** How long a stopped dump waits for a write in flight before it discards its output anyway. */
const ABORT_WAIT_MS = 2000;

/** Makes the dump's target once its stream id is known; `volume` says whose dump it is (a multiplexed tape logs it). */
export type DumpTargetFactory = (streamId: string, volume: { uuid: string; path: string }) => StreamTarget;

/**
 * How a dump reaches a volume that a server holds (see dump-at.ts): `vol` is then a
 * lockless view (Volume.openView) that may read only snapshots the server keeps
 * unchanged, so the server takes the snapshot, evaluates a dry run (which may name the
 * active file system), and pins what the dump reads.
 */
export interface DumpServedAccess {
  /** Takes the dump's snapshot in the server; returns a view whose table holds it. */
  takeSnapshot(name: string): Promise<Volume>;
  evaluate(expression: string): Promise<StorageImageSummary>;
  /**
   * Called with the snapshots the dump reads, before it reads any of their planes or
   * blocks: they must not change until the dump ends. False (nothing more held) when one
   * of them went or was replaced since the view was read: the dump plans again.
   */
  hold(snapshots: SnapshotEntry[]): Promise<boolean>;
  /** A view of the volume as it is now (the one before is closed), to plan again from. */
  refresh(): Promise<Volume>;
  /** Called before the trailer: throws when a held snapshot changed after all (a shadow snapshot whose blocks were reused). */
  verify(): Promise<void>;
  /** Deletes the snapshot takeSnapshot took, when the dump failed or was stopped by a signal. */
  dropSnapshot(name: string): Promise<void>;
}

/** How often a served dump plans again when the snapshots it would read change under it. */
const HOLD_ATTEMPTS = 5;
/** How many taken names a dump steps past when it names its snapshot (another dump may take one meanwhile). */
const NAME_ATTEMPTS = 100;

/**
 * The highest level at most `from` whose base (the newest lower dump of an older snapshot)
 * the volume still holds as it was dumped: the level a refused dump can be taken at (the
 * level of its base's dump may have lost its own base to retention too). 0 when none.
 */
function levelThatWorks(vol: Volume, ours: DumpRecord[], top: SnapshotEntry | null, from: number): number {
  for (let level = from; level > 0; level--) {
    const baseDump = ours.filter((d) => d.level < level && (top === null || d.top.id < top.id)).at(-1);
    if (baseDump && vol.snapshots().some((s) => s.id === baseDump.top.id)) return level;
  }
  return 0;
}

/** Which snapshots and which base a level-N dump at `top` takes (top may be null for a dry run on the active file system). */
export function planDump(vol: Volume, level: number, top: SnapshotEntry | null, catalog: Catalog): DumpPlan {
  if (!Number.isInteger(level) || level < 0 || level > 9) throw new InvalidInputError(`invalid dump level ${level}`, 'use 0 to 9');
  let base: SnapshotEntry | null = null;
  let baseDump: DumpRecord | null = null;
  if (level > 0) {
    // dumps of this volume's history: not those of a replica restored from it (same uuid, and
    // ids that its own snapshots take again: told apart by generation and creation time)
    // (and not those dumped from another copy that still exists: a replica at another path)
    const holds = (d: DumpRecord) => vol.snapshots().some((s) => isSnapshotOf(d.top, s));
    const ours = ownRecords(catalog.forVolume(vol.rootRecord.uuid), vol.path, uuidOfVolumeAt, holds).filter((d) => !vol.snapshots().some((s) => s.id === d.top.id && !isSnapshotOf(d.top, s)));
    const lower = ours.filter((d) => d.level < level && (top === null || d.top.id < top.id));
    baseDump = lower[lower.length - 1] ?? null;
    if (!baseDump) {
      // lower dumps there are, but none of a snapshot older than this one: it is no incremental of them
      const later = ours.filter((d) => d.level < level).at(-1);
      if (later && top !== null) {
        throw new InvalidInputError(
          `${vol.path}: snapshot "${top.name}" is not newer than the top of the level ${later.level} dump ${later.id.slice(0, 8)} ("${later.top.name}", ${later.date}), the newest below level ${level}: a level ${level} dump holds what changed after it`,
          `dump a newer snapshot, or this one at level 0`,
        );
      }
      throw new NotFoundError(`${vol.path}: no dump of this volume below level ${level} in the catalog ${catalog.file}`, 'take a level 0 dump first, or give --catalog the catalog that records its dumps');
    }
    const snap = vol.snapshots().find((s) => s.id === baseDump!.top.id);
    if (!snap) {
      throw new NotFoundError(
        `${vol.path}: the base of this level ${level} dump, snapshot "${baseDump.top.name}" (level ${baseDump.level} dump of ${baseDump.date}), no longer exists`,
        `take a lower level instead: --level ${levelThatWorks(vol, ours, top, baseDump.level)}; to free a dump's top snapshot and still build later levels on it, make it a shadow one instead of deleting it: imgstream snapshot shadow ${vol.path} NAME`,
      );
    }
    // a shadow base (a bookmark: snapshot shadow) may have had blocks reused: its bits
    // cleared as they were, so the image below carries every reused block that the top
    // holds, and the map's differences are taken only from base blocks it still holds
    base = snap;
  }
  const topId = top?.id ?? Number.MAX_SAFE_INTEGER;
  const snapshots = vol
    .snapshots()
    .filter((s) => s.id <= topId && (base === null || s.id > base.id))
    .filter((s) => !(s.shadow && s.reusedBlocks > 0) || s.id === top?.id);
  if (top && top.shadow && top.reusedBlocks > 0) {
    throw new InvalidInputError(`${vol.path}: shadow snapshot "${top.name}" had blocks reused and is no longer a consistent image`, 'dump a regular snapshot');
  }
  const terms = snapshots.map((s) => s.name).reverse();
  if (!top) terms.unshift('active');
  if (terms.length === 0) throw new InvalidInputError(`${vol.path}: nothing to dump: no snapshot after the base`, 'take a snapshot first');
  const expression = terms.join(' + ') + (base ? ` - ${base.name}` : '');
  return { level, base, baseDump, top, snapshots, expression };
}

/**
 * The tree map deltas are taken from: the base's, unless it is a shadow snapshot that lost
 * blocks (0: every carried map node travels whole). Its plane cannot tell which of its
 * blocks still hold its contents: a change thrown away (an import that failed, a volume
 * found full half way) may have written over blocks it took from the shadow, and throwing
 * the change away set their bits again (the shadow is only counted as having lost blocks:
 * the taint). A delta from such a node would be applied by the receiver to the base's true
 * node: wrong entries. Its plane still says which data blocks the image leaves out: a block
 * written over so is referenced by no later snapshot (the change that took it was thrown away).
 */
function deltaBaseRoot(base: SnapshotEntry): number {
  return base.shadow && base.reusedBlocks > 0 ? 0 : base.mapRoot;
}

/** The stream header's base: a shadow one says so (a receiver holding it regular lets the blocks the source reused replace its own). */
function streamBase(base: SnapshotEntry | null): StreamHeader['base'] {
  return base ? { id: base.id, name: base.name, generation: base.generation, createdMs: base.createdMs, ...(base.shadow ? { shadow: true } : {}) } : null;
}

function streamSnapshot(s: SnapshotEntry): StreamSnapshot {
  return { id: s.id, name: s.name, shadow: s.shadow, master: s.master, createdMs: s.createdMs, mapRoot: s.mapRoot, generation: s.generation, blocks: s.blocks, mappedBlocks: s.mappedBlocks };
}

/**
 * Runs a dump. The volume must be open for writing when no --snapshot is given (one is
 * taken), unless `served` says how a server takes it. `opts.signal` stops it before its
 * trailer: its output is discarded, its snapshot deleted, and it throws stoppedBy()'s error.
 */
export async function dumpVolume(vol: Volume, target: DumpTargetFactory, opts: DumpOptions, progress: Progress = noProgress, served?: DumpServedAccess): Promise<DumpResult> {
  const order = parseOrder(opts.order);
  let top: SnapshotEntry | null = opts.snapshot !== undefined ? vol.snapshot(opts.snapshot) : null;
  if (opts.dryRun) {
    const plan = planDump(vol, opts.level, top, opts.catalog);
    const img = served ? await served.evaluate(plan.expression) : evaluate(vol, plan.expression);
    return result(plan, img, null, null, 0, null, true, 0);
  }
  // check the catalog (it reads, and takes the record), the plan (base present) and the
  // target (it exists, a peer refuses) before taking a snapshot for them
  opts.catalog.checkWritable();
  planDump(vol, opts.level, top, opts.catalog);
  const streamId = randomUUID();
  const medium = target(streamId, { uuid: vol.rootRecord.uuid, path: vol.path });
  let plan: DumpPlan;
  let img: StorageImageSummary;
  // the snapshot this dump took: a failed or stopped dump deletes it (no later level could
  // use it, and a nightly job failing every night would otherwise pile them up); a killed
  // one (kill -9) leaves it
  let taken: string | null = null;
  const dropTaken = async (): Promise<boolean> => {
    if (taken === null) return false;
    try {
      if (served) await served.dropSnapshot(taken);
      else vol.deleteSnapshot(taken);
      return true;
    } catch {
      return false; // the error reported is the dump's; `snapshot list` shows what is left
    }
  };
  const signal = opts.signal;
  let completing = false;
  /** Undoes what the dump did (its output, its snapshot), then throws: the error, or the stop by a signal. */
  const fail = async (err: unknown, discard: () => Promise<string | void>): Promise<never> => {
    const left = (await discard()) || null; // what the medium could not remove (an S3 upload it could not abort)
    const dropped = await dropTaken();
    const stopped = completing ? null : stopSignal(signal);
    if (stopped) throw stoppedBy(stopped, stoppedMessage(vol.path, stopped, medium, dropped ? taken : null, taken, left));
    throw left ? withLeftBehind(err, left) : err;
  };
  try {
    await untilStopped(Promise.resolve(medium.open?.()), signal);
    if (!top) {
      // the name is chosen from this process's view: another dump of a served volume may
      // take the same one in the same second, so a name taken meanwhile moves on to the next
      const tried = new Set<string>();
      for (;;) {
        const name = newSnapshotName(vol, opts.level, tried);
        try {
          if (served) {
            vol = await served.takeSnapshot(name);
            top = vol.snapshot(name);
          } else top = vol.createSnapshot(name);
          taken = name;
          break;
        } catch (err) {
          if (!(err instanceof ExistsError) || tried.size >= NAME_ATTEMPTS) throw err;
          tried.add(name);
        }
      }
    }
    throwIfStopped(signal);
    plan = planDump(vol, opts.level, top, opts.catalog);
    // a snapshot deleted meanwhile (retention, a mirror update dropping its previous one) is
    // no longer retained: plan again without it (a base that went is refused by the plan)
    for (let attempt = 1; served && !(await served.hold(plan.base ? [...plan.snapshots, plan.base] : plan.snapshots)); attempt++) {
      if (attempt === HOLD_ATTEMPTS) throw new BusyError(`${vol.path}: the snapshots changed ${HOLD_ATTEMPTS} times while the dump was planned`, 'run the dump again');
      vol = await served.refresh();
      top = vol.snapshot(top.name);
      plan = planDump(vol, opts.level, top, opts.catalog);
    }
    img = evaluate(vol, plan.expression);
    throwIfStopped(signal);
  } catch (err) {
    return fail(err, () => medium.abort());
  }
  const r = vol.rootRecord;
  const header: StreamHeader = {
    format: 'imgstream-stream',
    version: 1,
    streamId,
    volume: { uuid: r.uuid, blockSize: r.blockSize, nblocks: r.nblocks, logicalSize: r.logicalSize, maxSnapshots: r.maxSnapshots, mapDepth: r.mapDepth },
    level: plan.level,
    expression: plan.expression,
    base: streamBase(plan.base),
    top: { id: top.id, name: top.name, generation: top.generation },
    snapshots: plan.snapshots.map(streamSnapshot),
    retained: vol.snapshots().filter((s) => s.id <= top.id).map((s) => ({ id: s.id, name: s.name, generation: s.generation, ...(s.shadow ? { shadow: true } : {}) })),
    created: new Date().toISOString(),
    host: os.hostname(),
    order: order.name,
    compression: opts.compression,
    image: { blocks: img.blocks, bytes: img.bytes, extents: img.extents },
  };
  let deltas: MapDelta[];
  try {
    // an incremental sends the map blocks it carries as differences from the base's tree
    // (a level 0 walks every map node it carries only to check it: damage would travel as it is)
    const carried = imageMembers(vol, plan.expression);
    const roots = plan.snapshots.map((s) => s.mapRoot);
    if (plan.base) deltas = collectMapDeltas(vol, roots, deltaBaseRoot(plan.base), carried, true);
    else {
      checkCarriedMaps(vol, roots, carried);
      deltas = [];
    }
  } catch (err) {
    return fail(err, () => medium.abort());
  }
  const writer = new ImageStreamWriter(medium, { compression: opts.compression, threads: opts.threads, mapDeltas: deltas.length > 0, key: opts.key });
  const stream = async (): Promise<void> => {
    await writer.start(header);
    await writePlanes(vol, writer, plan.snapshots, signal);
    progress.start('dumping', img.bytes, 'bytes');
    const sent = await writeMapDeltas(vol, writer, deltas);
    progress.update(sent);
    const excluded = new SparseBitmap(vol.layout.wordsPerPlaneBlock);
    for (const d of deltas) excluded.add(d.vbn);
    await writeBlocks(vol, writer, plan.expression, order, excluded, (done) => progress.update(sent + done), signal);
    progress.stop();
    await served?.verify();
  };
  let completed: { rec: DumpRecord; position: MediaPosition; streamBytes: number; sha256: string; mapDeltaNodes: number };
  try {
    // a signal stops the dump up to its trailer; once the stream is being completed, it completes and is recorded
    await untilStopped(stream(), signal);
    completing = true;
    await pausePoint('dump-completing');
    const { trailer, position, streamBytes } = await writer.finish();
    const rec: DumpRecord = {
      id: streamId,
      volume: { uuid: r.uuid, path: path.resolve(vol.path) }, // as given, it would name another volume from another directory
      level: plan.level,
      base: plan.base ? { id: plan.base.id, name: plan.base.name, generation: plan.base.generation, createdMs: plan.base.createdMs } : null,
      top: { id: top.id, name: top.name, generation: top.generation, createdMs: top.createdMs },
      snapshots: plan.snapshots.map((s) => s.name),
      expression: plan.expression,
      date: header.created,
      finished: new Date().toISOString(),
      media: position,
      blocks: trailer.dataBlocks + trailer.mapDeltaNodes,
      dataBytes: trailer.dataBytes,
      streamBytes,
      sha256: trailer.sha256,
      status: 'complete',
      ...(opts.key ? { encrypted: true as const } : {}),
    };
    completed = { rec, position, streamBytes, sha256: trailer.sha256, mapDeltaNodes: trailer.mapDeltaNodes };
  } catch (err) {
    progress.stop();
    // stopped: a write the medium never takes (a pipe nobody reads) is not waited for long
    return fail(err, () => writer.abort(stopSignal(signal) && !completing ? { waitMs: ABORT_WAIT_MS } : {}));
  }
  // recorded only now, complete; a stream sent to stdout is recorded too (its far end
  // holds it), so later levels find their base. A catalog that cannot take the record
  // (damaged or replaced meanwhile) leaves the dump complete: the stream and its snapshot
  // stay, for a rebuilt catalog to record and a later level to build on
  // a device that keeps nothing (/dev/null: a dump run for its timing) is no base for a later
  // level, whose chain could then never be restored: not recorded, and its snapshot goes
  if (keepsNothing(completed.position)) {
    const deleted = taken !== null && (await dropTaken()) ? { snapshotDeleted: taken } : {};
    return { ...result(plan, img, streamId, completed.position, completed.streamBytes, completed.sha256, false, completed.mapDeltaNodes), recorded: false, ...deleted };
  }
  try {
    opts.catalog.add(completed.rec);
  } catch (err) {
    throw notRecorded(err, medium, completed.position, top.name, opts.catalog.file);
  }
  return result(plan, img, streamId, completed.position, completed.streamBytes, completed.sha256, false, completed.mapDeltaNodes);
}

/** The error of a complete dump whose catalog refused its record: the catalog's, saying what was kept. */
function notRecorded(err: unknown, medium: StreamTarget, at: MediaPosition, top: string, catalog: string): ImgstreamError {
  // what rebuild reads it from: the file, tape directory, object or peer URL (stdout: whatever holds it now)
  const from = at.kind === 'tape' ? `tape:${at.location}` : at.kind === 'stdout' ? 'WHERE-IT-WENT' : at.location;
  // the store the object is on, as the dump reached it: without it the command goes to AWS
  const store = at.kind === 's3' ? `${at.endpoint !== undefined ? ` --s3-endpoint ${at.endpoint}` : ''}${at.pathStyle ? ' --s3-path-style' : ''}` : '';
  const what = err instanceof ImgstreamError ? err : new IoError(`${catalog}: ${(err as Error).message}`);
  return errorOfCode(
    what.code,
    `${what.message}: the dump to ${medium.description} is complete but not recorded in the catalog (its snapshot "${top}" is kept)`,
    `mend or move the catalog, then record the dump with: imgstream catalog rebuild --from ${from}${store} --catalog ${catalog}`,
  ) as ImgstreamError;
}

/** The one line a dump stopped by a signal ends with: what became of its output and its snapshot. */
function stoppedMessage(volume: string, by: StopSignal, medium: StreamTarget, dropped: string | null, taken: string | null, left: string | null): string {
  const output = medium.description === 'stdout' ? 'the stream on stdout is incomplete (readers refuse it)' : (left ?? medium.kept?.() ?? `nothing was left on ${medium.description}`);
  const snapshot = dropped ? `, snapshot "${dropped}" it took deleted` : taken ? `, snapshot "${taken}" it took could not be deleted` : '';
  return `dump of ${volume} stopped by ${by}: nothing recorded, ${output}${snapshot}`;
}

function result(plan: DumpPlan, img: StorageImageSummary, streamId: string | null, media: MediaPosition | null, streamBytes: number, sha256: string | null, dryRun: boolean, mapDeltaBlocks: number): DumpResult {
  return {
    streamId,
    dryRun,
    level: plan.level,
    base: plan.base?.name ?? null,
    top: plan.top?.name ?? 'active',
    snapshots: plan.snapshots.map((s) => s.name),
    expression: plan.expression,
    blocks: img.blocks,
    bytes: img.bytes,
    extents: img.extents,
    mapDeltaBlocks,
    streamBytes,
    sha256,
    media,
  };
}

function evaluate(vol: Volume, expression: string): StorageImageSummary {
  const source = vol.planeSource();
  return evaluateImage(resolveExpression(parseExpression(expression), source), source, {});
}

function newSnapshotName(vol: Volume, level: number, tried: ReadonlySet<string>): string {
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');
  const base = `dump-l${level}-${stamp}`;
  const taken = new Set([...vol.snapshots().map((s) => s.name), ...tried]);
  let name = base;
  for (let i = 2; taken.has(name); i++) name = `${base}-${i}`;
  return name;
}
