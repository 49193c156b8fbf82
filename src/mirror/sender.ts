// The source side of a mirror transfer (protocol.ts).
//
// An update takes a snapshot, mirror.<tag>.<n>, and in the same CP swaps the
// mark-on-allocate planes: the plane that recorded every allocation since the last
// transfer stops recording and is shipped, the other (emptied) records from now on. The
// new snapshot pins every block being shipped, so none can be reused until the transfer
// is done; then the shipped plane is emptied and the relationship's older snapshot goes.
// A transfer that fails keeps its plane (the next update folds it into the one it ships,
// so nothing is lost) and its snapshot (the next update resumes it when the destination
// still holds what it acknowledged). When the destination never got the plan, or failed
// and kept nothing, nothing can resume: the snapshot this run took is deleted again.
//
// Which blocks travel (plan.mode):
//   moa     the marked blocks the new state holds: no plane subtraction. Used when the
//           planes have tracked this relationship since the destination's current state.
//   common  the new state's blocks minus those of the snapshots both sides hold (resync,
//           replicate pull, or a relationship the planes did not track).
//   full    every block of the new state (a first transfer).
// Planes travel for the snapshots the destination lacks; the snapshots it has and the new
// state lacks are deleted there, which deallocates their blocks.
import os from 'node:os';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { CorruptError, ImgstreamError, InvalidInputError, IoError, errorOfCode, stoppedBy } from '../core/errors.js';
import { stopSignal } from '../stream/interruption.js';
import { encodeMapDeltas, encodePlane, type MapDelta } from '../format/image-stream.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { noProgress, type Progress } from '../core/progress.js';
import { formatSize } from '../core/size.js';
import type { Volume } from '../volume/volume.js';
import { allZero } from '../volume/plane-edit.js';
import { ghostOf, hashChain, recordCrc } from './records.js';
import { RecordQueue } from './record-queue.js';
import { pausePoint } from '../volume/crash-point.js';
import { RECORD_BYTES, Selection } from './selection.js';
import { collectMapDeltas } from '../volume/map-deltas.js';
import { geometryOf } from './receiver.js';
import { identOf, MIRROR_PROTOCOL, sameSnapshot, type DestinationState, type MirrorChannel, type SnapshotIdent, type TransferDone, type TransferMode, type TransferPlan, type WireError } from './protocol.js';
import { canonicalPath, RECENT_TRANSFERS, relationshipKey, relationshipTag, type MirrorState, type Relationship, type TransferRecord } from './state.js';
import { localSource, type SourceAccess } from './source-access.js';
import { refuseMirrorRollback, refuseReplicaRollback } from './rollback.js';
import { atPeerName, peerFlagsNote } from '../peer/index.js';

export { finishSource, localSource, prepareSource, type FinishArgs, type PrepareArgs, type SourceAccess } from './source-access.js';

export interface SendOptions {
  /** Where the destination is, as the user named it: the relationship's identity. */
  destination: string;
  /** The destination's name (DIR/NAME on a peer). */
  name: string;
  op: 'mirror.update' | 'mirror.resync' | 'replicate';
  state: MirrorState;
  /** replicate: the snapshot to bring the destination to (no snapshot is taken). */
  top?: string;
  progress?: Progress;
  /** The source volume as the user named it (for hints); default its path. */
  volumeLabel?: string;
  /** Aborted when the user stops the run: the transfer is cut (the channel's owner closes it) and reported as stopped. */
  signal?: AbortSignal;
  /** How DATA and PLANE records travel (default zstd, when the destination can take it). */
  compress?: MirrorCompression;
  /**
   * mirror.resync: the destination may be a volume that is no mirror, of this source's
   * identity (the volume this one was a mirror of, after a failover): it becomes this one's
   * mirror, its changes since their newest common snapshot dropped (failback).
   */
  reverse?: boolean;
}

export type MirrorCompression = 'none' | 'zstd';

/**
 * The error of an update that `signal` stopped: the transfer resumes on the next one. A
 * resync (given as `resync`) is never resumed, and an update of the mirror it was bringing
 * back is refused until one completes: the hint is to run it again.
 */
export function stoppedError(signal: AbortSignal, resync?: { volume: string; destination: string }): ImgstreamError {
  const why = typeof signal.reason === 'string' ? ` by ${signal.reason}` : '';
  // exit 130 (SIGINT), 129 (SIGHUP) or 143 (SIGTERM), as a stopped dump
  if (resync) return stoppedBy(stopSignal(signal) ?? 'SIGTERM', `stopped${why} before the resync completed`, `the mirror stays broken off until a resync completes; run it again, it starts over: imgstream mirror resync ${resync.volume} --to ${resync.destination}${peerFlagsNote(resync.destination)}`);
  return stoppedBy(stopSignal(signal) ?? 'SIGTERM', `stopped${why} before the transfer completed`, 'the next update resumes it');
}

export interface MirrorResult {
  destination: string;
  transferId: string;
  mode: TransferMode;
  top: string;
  snapshots: number;
  /** Blocks sent (new this run), and all the transfer carries. */
  blocks: number;
  planBlocks: number;
  /** Bytes sent on the channel in this run (headers and payloads, before any transport compression). */
  bytes: number;
  dataBytes: number;
  resumedRecords: number;
  /** Map nodes sent as differences from the destination's nodes. */
  mapDeltas: number;
  deallocated: number;
  staged: number;
  generation: number;
  durationMs: number;
  upToDate: boolean;
  /** This run finished a transfer an earlier run started (its top is older than now). */
  resumedTransfer: boolean;
  /** Wire bytes of every attempt at this transfer (earlier, stopped runs too). */
  totalBytes: number;
  /** How the records travelled: zstd, or none (not asked for, or the destination cannot take it). */
  compression: MirrorCompression;
  /** A stopped transfer the destination kept and dropped, as it could not resume there (the mirror moved, deleted, replaced): why. */
  discarded?: string;
}

/** Errors the destination reported (remoteError made them): it says what it kept. */
const fromDestination = new WeakSet<Error>();

/** An error the other side reported, as the same kind of error here. */
export function remoteError(e: WireError, where: string): ImgstreamError {
  const kept = e.kept && Number.isFinite(e.kept.bytes) && Array.isArray(e.kept.files) ? { kept: { bytes: e.kept.bytes, files: e.kept.files.map(String) } } : undefined;
  // a message that already names the place (a local destination's own error), or a daemon's that names
  // what it holds by its NAME (peer://HOST:PORT/NAME is `where`), names it once
  const message = e.message.startsWith(`${where}: `) ? e.message : (atPeerName(e.message, where) ?? `${where}: ${e.message}`);
  const made = errorOfCode(e.code, message, e.hint, kept);
  const err = made instanceof ImgstreamError ? made : new IoError(message, e.hint).withDetails(kept);
  fromDestination.add(err);
  return err;
}

/** What the destination kept of a stopped transfer, when its error said. */
export function keptOf(err: unknown): { bytes: number; files: string[] } | null {
  const d = err instanceof ImgstreamError ? (err.details as { kept?: { bytes: number; files: string[] } } | undefined) : undefined;
  return d?.kept ?? null;
}

/**
 * The destination's error with what to do about the partial transfer it kept. An update
 * resumes from it (the next update, once the cause is gone); a resync never resumes: the
 * mirror stays broken off until one completes, and the next one starts over and drops it.
 * `mirror abandon` drops it either way. The error is a failure or a stop by a signal.
 */
export function withKeptHint(err: ImgstreamError, kept: { bytes: number; files: string[] }, volume: string, destination: string, op: SendOptions['op'] = 'mirror.update'): ImgstreamError {
  const abandon = `imgstream mirror abandon ${volume} --to ${destination}${peerFlagsNote(destination)}`;
  const size = formatSize(kept.bytes);
  const files = kept.files.join(', ');
  const bySignal = err.code === 'interrupted' || err.code === 'terminated' || err.code === 'hangup';
  // the daemon stopped it (one shutting down says when to run it again)
  const when = err.code === 'network' && err.hint ? err.hint : bySignal ? 'run it again' : 'run it again once the cause is fixed';
  const hint =
    // the mirror volume itself is full: it holds its old blocks until the update's CP, so an update that replaces
    // most of the disk (its base snapshot deleted on the source) cannot fit; a new mirror can
    err.code === 'volume-full'
      ? `the mirror must hold its current blocks and the ${size} this ${op === 'mirror.resync' ? 'resync' : 'update'} replaces them with until its CP, and has no room for both: drop this transfer (${abandon}), move the mirror aside, and update again into a new mirror (a full copy)`
      : op === 'mirror.resync'
        ? `the mirror stays broken off until a resync completes: ${when}, it starts over and drops the ${size} this one kept at the destination (${files}): imgstream mirror resync ${volume} --to ${destination}${peerFlagsNote(destination)}; to drop them now: ${abandon}`
        : err.code === 'network'
          ? `${err.hint ?? 'run the update again'}: it resumes from the ${size} of this transfer the destination keeps (${files}), or drop them with: ${abandon}`
          : bySignal
            ? `the next update resumes it from the ${size} of this transfer the destination keeps (${files}), or drop them with: ${abandon}`
            : `the destination keeps ${size} of this transfer (${files}) to resume from: ${/no space left/.test(err.message) ? 'free space there and run the update again' : 'run the update again once the cause is fixed'}, or drop it with: ${abandon}`;
  return errorOfCode(err.code, err.message, hint, err.details) as ImgstreamError;
}

async function expect(ch: MirrorChannel, what: string, where: string): Promise<Record<string, unknown>> {
  const m = await ch.receive();
  if (!m) throw new IoError(`${where}: the connection closed before the ${what}`, 'run the update again: it resumes');
  if (m.msg.error) throw remoteError(m.msg.error as WireError, where);
  if (!(what in m.msg)) throw new CorruptError(`${where}: expected the ${what}, got ${Object.keys(m.msg).join(',')}`);
  return m.msg;
}

/** Asks the destination for its state only. */
export async function destinationState(ch: MirrorChannel, name: string, geometry: ReturnType<typeof geometryOf> | null, where: string): Promise<DestinationState> {
  await ch.send({ op: 'mirror.state', name, protocol: MIRROR_PROTOCOL, volume: geometry });
  const m = await expect(ch, 'state', where);
  return m.state as DestinationState;
}

export async function sendMirror(source: Volume | SourceAccess, ch: MirrorChannel, opts: SendOptions): Promise<MirrorResult> {
  const access = 'prepare' in source ? source : localSource(source);
  let vol = access.volume();
  const started = Date.now();
  const progress = opts.progress ?? noProgress;
  const where = opts.destination;
  const geometry = geometryOf(vol);
  const uuid = geometry.uuid;
  const key = relationshipKey(uuid, opts.destination);
  // replicas share the uuid: the planes are this volume file's
  const moaKey = `${uuid} ${path.resolve(vol.path)}`;
  const tag = relationshipTag(opts.destination);
  const cascade = vol.mirrorFlags.mirror && !vol.mirrorFlags.broken;
  const volume = { uuid, path: canonicalPath(vol.path) };
  const init = (): Relationship => ({ key, volume, destination: opts.destination, state: 'idle', lastSuccess: null, lastAttempt: null, pending: null, moa: null });
  const rel = opts.state.get(key);
  const track = opts.op !== 'replicate';

  // offer compressed records; a destination that can take them says so beside its state
  // (one that predates them ignores the offer and gets them raw)
  const offer = (opts.compress ?? 'zstd') === 'zstd' ? { compress: ['zstd'] } : {};
  await ch.send({ op: opts.op === 'replicate' ? 'mirror.update' : opts.op, name: opts.name, protocol: MIRROR_PROTOCOL, volume: geometry, pid: process.pid, ...offer, ...(opts.reverse && opts.op === 'mirror.resync' ? { reverse: true } : {}) });
  const stateMsg = await expect(ch, 'state', where);
  const dest = stateMsg.state as DestinationState;
  const compression: MirrorCompression = offer.compress && stateMsg.compress === 'zstd' ? 'zstd' : 'none';
  const discarded: { discarded?: string } = dest.discarded ? { discarded: dest.discarded } : {};
  if (dest.exists && dest.uuid !== uuid) throw new InvalidInputError(`${where}: holds another volume (${dest.uuid})`, 'mirror to another name');
  if (opts.op === 'replicate' && opts.top !== undefined) refuseReplicaRollback(dest, vol.snapshot(opts.top), where);

  // resume the transfer that stopped, when both sides still have what it was about
  let transferId: string;
  let top: SnapshotEntry;
  let mode: TransferMode;
  // the snapshot this run took, and whether the destination got the plan: a transfer that
  // fails with nothing kept to resume from drops its snapshot again
  let took: string | null = null;
  let planSent = false;
  let planBytes = 0; // the data the plan sends (for the hint of a transfer that filled the destination)
  const pend = rel?.pending;
  const pendTop = pend ? vol.snapshots().find((s) => sameSnapshot(identOf(s), pend.top)) : undefined;
  // only into the destination as the stopped transfer found it: a first transfer where NAME is
  // still absent, an incremental one where it still exists (the destination checks that it
  // is the very volume the acknowledged records went into, and that they are still there)
  const sameBase = pend?.base ? pend.base.exists === dest.exists : dest.exists || pend?.mode === 'full';
  const resumable = track && pend && pendTop && dest.resume?.transferId === pend.transferId && sameBase && (dest.top === null || dest.top.id < pend.top.id) && opts.op === 'mirror.update';
  if (resumable) {
    transferId = pend!.transferId;
    top = pendTop!;
    mode = pend!.mode;
  } else {
    // a new transfer: its top snapshot, and the planes swapped in the same CP
    const topName = await access.prepare({ tag, cascade, track, top: opts.top ?? null, keepIds: dest.snapshots.map((d) => d), replicate: opts.op === 'replicate' });
    if (opts.top === undefined && !cascade) took = topName;
    vol = access.volume();
    top = vol.snapshot(topName);
    const common = dest.snapshots.some((d) => vol.snapshots().some((s) => s.id <= top.id && sameSnapshot(identOf(s), d)));
    const owner = opts.state.moaOwner(moaKey);
    // the planes hold every allocation since they were last emptied, which only a
    // successful transfer of their owner does: valid while the destination is still at
    // the state of that transfer, made from this very volume file. A copy of this file (a
    // cloned disk: the same uuid, so the same relationship key) that updated the
    // destination since left it at a state of its own, which this file's planes know
    // nothing of: the destination's top must be the one this file sent last, and a
    // snapshot this file holds
    const moaFile = rel?.moa ? (rel.moa.path ?? rel.volume.path) : null;
    const holdsTop = dest.top !== null && vol.snapshots().some((s) => sameSnapshot(identOf(s), dest.top!));
    if (opts.op === 'mirror.update' && dest.exists && owner === key && rel?.moa && moaFile === volume.path && holdsTop && dest.top && sameSnapshot(dest.top, rel.moa.top)) {
      mode = 'moa';
    } else mode = dest.exists && common ? 'common' : 'full';
    transferId = randomUUID();
  }
  // the swap that made the plane this transfer ships (finish empties it only if no later
  // transfer swapped again meanwhile: that one took its marks over)
  const shippedSwaps = resumable ? pend!.moaSwaps : vol.rootRecord.moaSwaps;
  let queue: RecordQueue | null = null;
  // what the destination answers while records go out (read by `reader`)
  let failure: Error | null = null;
  let reader: Promise<void> | null = null;
  try {
    if (opts.op === 'mirror.update' && !resumable) refuseMirrorRollback(dest, top, vol.path, where);
    vol = await access.hold((v) => v.snapshots().filter((s) => s.id <= top.id).map((s) => s.name));
    top = vol.snapshot(top.name);
    const newState = vol.snapshots().filter((s) => s.id <= top.id);
    const keep = newState.filter((s) => dest.snapshots.some((d) => sameSnapshot(identOf(s), d)));
    const incoming = newState.filter((s) => !keep.includes(s));
    // (a snapshot made shadow on the source since is the same one: the transfer makes it shadow there too)
    const shadowedSince = keep.some((s) => s.shadow && dest.snapshots.find((d) => sameSnapshot(identOf(s), d))?.shadow === false);
    if (dest.exists && dest.top && sameSnapshot(dest.top, identOf(top)) && incoming.length === 0 && dest.snapshots.length === keep.length && !shadowedSince) {
      // nothing new: the destination already is this state
      if (track && !resumable) await access.finish({ tag, topId: top.id, cascade, moaSwaps: shippedSwaps });
      return { destination: where, transferId: '', mode, top: top.name, snapshots: newState.length, blocks: 0, planBlocks: 0, bytes: ch.bytesSent, dataBytes: 0, resumedRecords: 0, mapDeltas: 0, deallocated: 0, staged: 0, generation: 0, durationMs: Date.now() - started, upToDate: true, resumedTransfer: false, totalBytes: ch.bytesSent, compression: 'none', ...discarded };
    }
    if (track) {
      opts.state.update(key, init, (r) => {
        r.volume = volume;
        r.partial = dest.resume && dest.resume.keptBytes ? { transferId: dest.resume.transferId, bytes: dest.resume.keptBytes, since: r.partial?.since ?? new Date().toISOString() } : null;
        r.state = 'transferring';
        // a resumed transfer keeps what its earlier, stopped attempts sent
        const before = resumable && r.pending?.transferId === transferId ? r.pending.bytesSent : undefined;
        // the swap that made the shipped plane (a resumed attempt keeps its first one's: the planes may have swapped since)
        r.pending = { transferId, top: identOf(top), mode, moaSwaps: shippedSwaps, base: resumable && r.pending?.base ? r.pending.base : { exists: dest.exists }, ...(before ? { bytesSent: before } : {}) };
        r.lastAttempt = { started: new Date(started).toISOString(), finished: null, error: null, pid: process.pid, host: os.hostname(), ...(opts.op === 'mirror.resync' ? { resync: true } : {}) };
      });
    }
    const selection = new Selection(vol, newState, keep, mode);
    // map nodes go as differences from the nodes of the tree the destination has
    const baseSnap = dest.top ? keep.find((s) => sameSnapshot(identOf(s), dest.top!)) : undefined;
    const deltas = baseSnap ? collectMapDeltas(vol, incoming.map((s) => s.mapRoot), baseSnap.mapRoot, selection) : [];
    for (const d of deltas) selection.exclude(d.vbn);
    const plan: TransferPlan = {
      transferId,
      mode,
      volume: geometry,
      snapshots: newState.map(({ slot: _slot, ...rest }) => rest),
      top: identOf(top),
      keep: keep.map((s) => s.id),
      incoming: incoming.map((s) => s.id),
      blocks: selection.count() + deltas.length,
      bytes: 0,
    };
    plan.bytes = plan.blocks * vol.blockSize;
    planBytes = plan.bytes;
    planSent = true;
    await ch.send({ plan });
    const ready = (await expect(ch, 'ready', where)).ready as { resumeFrom: number; discarded?: string };
    const resumeFrom = ready.resumeFrom;
    // a stopped transfer the destination dropped only once it saw this plan (another one's)
    if (ready.discarded && !discarded.discarded) discarded.discarded = ready.discarded;

    // acknowledgements and the final answer arrive while records go out
    let done: TransferDone | null = null;
    reader = (async () => {
      for (;;) {
        const m = await ch.receive();
        if (!m) {
          if (!done) failure ??= new IoError(`${where}: the connection closed during the transfer`, 'run the update again: it resumes');
          return;
        }
        if (m.msg.error) {
          failure = remoteError(m.msg.error as WireError, where);
          return;
        }
        if (m.msg.done) {
          done = m.msg.done as TransferDone;
          return;
        }
      }
    })().catch((err: Error) => {
      failure ??= err;
    });

    let chain = hashChain.start();
    let i = 0;
    let sentBlocks = 0;
    let sentBytes = 0;
    progress.start(`mirroring to ${where}`, plan.bytes, 'bytes');
    const out = new RecordQueue(ch, compression === 'zstd');
    queue = out;
    const emit = async (kind: 'plane' | 'data' | 'mapdelta', payload: Buffer, blocks: number, release?: (buf: Buffer) => void) => {
      if (failure) throw failure;
      const crc = recordCrc(payload);
      chain = hashChain.add(chain, i, kind, payload.length, crc);
      if (i < resumeFrom) await out.push({ msg: { rec: i, kind, crc, length: payload.length, ghost: true }, payload: ghostOf(kind, payload), crc: recordCrc(ghostOf(kind, payload)) }, false);
      else {
        await out.push({ msg: { rec: i, kind, crc, length: payload.length }, payload, crc, release }, kind !== 'mapdelta');
        if (kind !== 'plane') sentBlocks += blocks;
        if (kind === 'data') sentBytes += blocks * vol.blockSize;
      }
      i++;
    };
    await sendPlanes(vol, newState, incoming, emit);
    for (let k = 0; k < deltas.length; ) {
      const group: MapDelta[] = [];
      let size = 8;
      while (k < deltas.length && size < RECORD_BYTES) {
        size += 20 + deltas[k].slots.length * 12;
        group.push(deltas[k++]);
      }
      await emit('mapdelta', encodeMapDeltas(group), group.length);
    }
    let doneBytes = 0;
    await selection.records(async (payload, n, release) => {
      await emit('data', payload, n, release);
      doneBytes += n * vol.blockSize;
      progress.update(doneBytes);
    });
    await out.flush();
    progress.stop();
    if (failure) throw failure;
    await ch.send({ end: { records: i, chain } });
    await reader;
    if (failure) throw failure;
    if (!done) throw new IoError(`${where}: no answer to the end of the transfer`, 'run the update again');
    const d = done as TransferDone;
    await pausePoint('mirror-committed'); // (tests: a stop signal once the destination committed)
    const result: MirrorResult = {
      destination: where,
      transferId,
      mode,
      top: top.name,
      snapshots: newState.length,
      blocks: sentBlocks,
      planBlocks: plan.blocks,
      bytes: ch.bytesSent,
      dataBytes: sentBytes,
      resumedRecords: resumeFrom,
      mapDeltas: deltas.length,
      deallocated: d.deallocated,
      staged: d.staged,
      generation: d.generation,
      durationMs: Date.now() - started,
      // no block moved and only this relationship's own snapshot changed: nothing was out of date
      upToDate: dest.exists && plan.blocks === 0 && d.deallocated === 0 && incoming.every((s) => s.name.startsWith(`mirror.${tag}.`)) && dest.snapshots.every((s) => keep.some((k) => k.id === s.id) || s.name.startsWith(`mirror.${tag}.`)),
      resumedTransfer: !!resumable,
      totalBytes: ch.bytesSent + (resumable ? (pend!.bytesSent ?? 0) : 0),
      compression,
      ...discarded,
    };
    if (track) {
      await access.finish({ tag, topId: top.id, cascade, moaSwaps: shippedSwaps });
      opts.state.update(key, init, (r) => {
        const finished = new Date().toISOString();
        r.state = 'idle';
        r.pending = null;
        r.partial = null;
        r.moa = { top: identOf(top), swaps: vol.rootRecord.moaSwaps, path: volume.path };
        r.lastSuccess = { transferId, top: identOf(top), finished, blocks: plan.blocks, bytes: result.bytes, durationMs: result.durationMs, mode };
        r.lastAttempt = { started: new Date(started).toISOString(), finished, error: null };
        const record: TransferRecord = { transferId, mode, top: identOf(top), finished, blocks: plan.blocks, sentBlocks, bytes: result.bytes, totalBytes: result.totalBytes, resumedRecords: resumeFrom, durationMs: result.durationMs, compression };
        r.recent = [...(r.recent ?? []), record].slice(-RECENT_TRANSFERS);
      }, moaKey);
    }
    return result;
  } catch (thrown) {
    progress.stop();
    // a send that found the connection closed: the destination's error, read meanwhile, says why it closed it
    if (reader && !fromDestination.has(thrown as Error) && thrown instanceof ImgstreamError && thrown.code === 'network') await settledWithin(reader, 5000);
    const caught = failure && fromDestination.has(failure) ? failure : thrown;
    const kept = keptOf(caught);
    // the user stopped it (Ctrl-C, systemctl stop): recorded as stopped, not failed
    const stoppedBySignal = opts.signal?.aborted ? (stopSignal(opts.signal) ?? 'SIGTERM') : null;
    let err = opts.signal?.aborted ? stoppedError(opts.signal, opts.op === 'mirror.resync' ? { volume: opts.volumeLabel ?? vol.path, destination: opts.destination } : undefined) : caught;
    if (kept && kept.bytes > 0 && err instanceof ImgstreamError) err = withKeptHint(err, kept, opts.volumeLabel ?? vol.path, opts.destination, opts.op);
    else if (!stoppedBySignal && dest.exists && err instanceof ImgstreamError && !err.hint && /no space left/.test(err.message)) {
      // an incremental that filled the destination's file system with nothing kept: said, with what it needs
      err = errorOfCode(err.code, err.message, `the mirror stays at its last complete state; the blocks this ${opts.op === 'mirror.resync' ? 'resync' : 'update'} wrote into its free space before the file system filled still take room in its file (later transfers write over them where the source uses them): free space there (this one sends ${formatSize(planBytes)} of blocks), or mirror to a larger file system`, err.details) as ImgstreamError;
    }
    // nothing to resume from: the destination never got the plan, or failed and says it kept nothing
    const dropTop = took !== null && !kept && (!planSent || fromDestination.has(caught as Error));
    if (dropTop) {
      try {
        await access.discard(took!);
      } catch {
        /* the next update drops it (a mirror snapshot the destination lacks) */
      }
    }
    if (track) {
      opts.state.update(key, init, (r) => {
        if (kept) r.partial = { transferId, bytes: kept.bytes, since: r.partial?.transferId === transferId ? r.partial.since : new Date().toISOString() };
        if (dropTop && r.pending?.transferId === transferId) r.pending = null;
        if (r.pending?.transferId === transferId) r.pending.bytesSent = (r.pending.bytesSent ?? 0) + ch.bytesSent;
        r.state = stoppedBySignal ? 'stopped' : 'failed';
        r.lastAttempt = { started: new Date(started).toISOString(), finished: new Date().toISOString(), error: (err as Error).message, ...(stoppedBySignal ? { stoppedBy: stoppedBySignal } : {}), ...(opts.op === 'mirror.resync' ? { resync: true } : {}) };
      });
    }
    try {
      await ch.send({ error: { code: err instanceof ImgstreamError ? err.code : 'internal', message: (err as Error).message, ...(err instanceof ImgstreamError && err.hint ? { hint: err.hint } : {}) } });
    } catch {
      /* gone */
    }
    throw err;
  } finally {
    await queue?.close();
  }
}

/** Waits for `p` to settle, at most `ms`. */
async function settledWithin(p: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([p, new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)))]);
  clearTimeout(timer);
}

async function sendPlanes(vol: Volume, newState: SnapshotEntry[], incoming: SnapshotEntry[], emit: (kind: 'plane', payload: Buffer, blocks: number) => Promise<void>): Promise<void> {
  const bs = vol.blockSize;
  const per = Math.max(1, Math.floor(RECORD_BYTES / bs));
  for (const s of incoming) {
    const index = newState.indexOf(s);
    const plane = vol.layout.snapshotPlane(s.slot);
    const scan = vol.scanner(plane);
    let chunks: number[] = [];
    let words: Uint8Array[] = [];
    for (let c = 0; c < vol.layout.planeBlocks; c++) {
      const w = scan.words(c);
      if (scan.isZero(w) || allZero(w)) continue;
      chunks.push(c);
      words.push(Buffer.from(new Uint8Array(w.buffer, w.byteOffset, w.byteLength)));
      if (chunks.length === per) {
        await emit('plane', encodePlane(index, chunks, words, bs), 0);
        chunks = [];
        words = [];
      }
    }
    if (chunks.length) await emit('plane', encodePlane(index, chunks, words, bs), 0);
  }
}

export type { SnapshotIdent };
