// The destination side of a mirror transfer (protocol.ts): the conversation with a source,
// what the destination's state is, `mirror break`. The destination volume is the file at
// `path`; a first transfer builds it under `.NAME.mirror-new` and links it into place after
// its CP, so NAME never names a half-made mirror. Applying a transfer's records, and what
// survives a crash while they arrive, is apply-transfer.ts.
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, FormatVersionError, ImgstreamError, InvalidInputError, NotAVolumeError, NotFoundError } from '../core/errors.js';
import { Volume } from '../volume/volume.js';
import { refuseNonVolumeFile } from '../volume/block-file.js';
import { applyTransfer } from './apply-transfer.js';
import { holdingDestination } from './destination-lock.js';
import { abandonPartial, checkDestinationPath, dropStaleResume, partialFiles, readResume, settleFresh, sidePaths, staleResume } from './side-files.js';
import { BROKEN_OFF, NO_MIRROR, NOT_A_MIRROR, geometryMatches, identOf, MIRROR_PROTOCOL, type DestinationState, type MirrorChannel, type TransferDone, type TransferPlan, type VolumeGeometry } from './protocol.js';

export { abandonPartial, partialFiles } from './side-files.js';

const ACK_BYTES = 32 << 20;

export interface ReceiverOptions {
  log?: (line: string) => void;
  /** Acknowledge (fsync, resume file) after this many payload bytes, or a second. Default 32 MiB. */
  ackBytes?: number;
  /** Accept zstd-compressed records when the source offers them (default true; false answers as a receiver that predates them). */
  compress?: boolean;
  /**
   * Where this side reports the outcome (replicate pull): an error the source sends in
   * place of its plan is thrown as this gives it, never taken for "nothing to do".
   */
  sourceError?: (error: Record<string, unknown>) => Error;
  /** Who asks, when not this process (a peer daemon's client): a refused conversation is told. */
  client?: string;
}

export function geometryOf(vol: Volume): VolumeGeometry {
  const r = vol.rootRecord;
  return { uuid: r.uuid, blockSize: r.blockSize, nblocks: r.nblocks, logicalSize: r.logicalSize, maxSnapshots: r.maxSnapshots, mapDepth: r.mapDepth };
}

/** The destination's state as the source needs it. */
export function describeDestination(volPath: string): DestinationState {
  settleFresh(volPath);
  const { resume } = sidePaths(volPath);
  const r = readResume(resume);
  const kept = partialFiles(volPath);
  // a stopped transfer resumes only into the very volume its acknowledged records went into
  const resumeOf = (vol: Volume | null): Pick<DestinationState, 'resume' | 'discarded'> => {
    if (!r) return { resume: null };
    const stale = staleResume(volPath, r, vol);
    if (stale) return { resume: null, discarded: `dropped the stopped transfer ${r.transferId} kept at the destination: ${stale}` };
    return { resume: { transferId: r.transferId, planHash: r.planHash, acked: r.acked, keptBytes: kept.bytes } };
  };
  if (!fs.existsSync(volPath)) return { exists: false, uuid: null, geometry: null, mirror: false, broken: false, snapshots: [], top: null, ...resumeOf(null) };
  let vol: Volume;
  try {
    vol = Volume.open(volPath, { write: false });
  } catch (err) {
    // a file of another kind (a dump stream, an image): a mirror update creates its destination, never over one
    if (err instanceof NotAVolumeError && !(err instanceof FormatVersionError)) throw new NotAVolumeError(`${volPath}: not an imgstream volume, so not a mirror`, 'a mirror update creates its destination: give a path that does not exist yet');
    throw err;
  }
  try {
    const snaps = vol.snapshots();
    const flags = vol.mirrorFlags;
    const newest = snaps[snaps.length - 1];
    const top = flags.mirror && !flags.broken && newest && newest.mapRoot === vol.rootRecord.mapRoot ? identOf(newest) : null;
    return { exists: true, uuid: vol.rootRecord.uuid, geometry: geometryOf(vol), mirror: flags.mirror, broken: flags.broken, snapshots: snaps.map((s) => ({ ...identOf(s), shadow: s.shadow })), top, ...resumeOf(vol) };
  } finally {
    vol.close();
  }
}

/**
 * An error as the source sees it, and what a stopped transfer kept. Paths stay as they
 * are: through a peer daemon its channel rewrites them into the names clients use
 * (src/peer/daemon-paths.ts); a local mirror's source is on this machine.
 */
function wireError(err: unknown, volPath: string): { code: string; message: string; hint?: string; kept?: { bytes: number; files: string[] } } {
  const kept = partialFiles(volPath);
  const extra = kept.files.length > 0 ? { kept } : {};
  if (err instanceof ImgstreamError) return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}), ...extra };
  return { code: 'internal', message: (err as Error).message ?? String(err), ...extra };
}

/** Whether the mirror at `volPath` is broken off (after an abandoned resync it still is); false for anything else. */
export function isBrokenOff(volPath: string): boolean {
  try {
    return describeDestination(volPath).broken;
  } catch {
    return false;
  }
}

/** Makes a mirror destination writable (`mirror break`). */
export function breakMirror(volPath: string): { broken: boolean; generation: number } {
  // the hints are a mirror's, not those of a volume to create or import into
  const hint = 'give a mirror destination: imgstream mirror status SOURCE lists them';
  if (!fs.existsSync(volPath)) throw new NotFoundError(`${volPath}: no mirror there to break`, hint);
  // a named pipe or a socket is named as every command names it (below, any other file is "not an imgstream volume")
  refuseNonVolumeFile(volPath, fs.statSync(volPath));
  let vol: Volume;
  try {
    vol = Volume.open(volPath, { write: true, mirror: true });
  } catch (err) {
    if (err instanceof NotAVolumeError && !(err instanceof FormatVersionError)) throw new NotAVolumeError(`${volPath}: not an imgstream volume, so not a mirror`, hint);
    throw err;
  }
  try {
    if (!vol.mirrorFlags.mirror) throw new InvalidInputError(`${volPath}: is not a mirror destination`, hint);
    vol.setMirrorFlags({ mirror: true, broken: true });
    vol.commit();
    return { broken: true, generation: vol.rootRecord.generation };
  } finally {
    vol.close();
  }
}

/**
 * Serves one conversation with a source: `hello` is its first message. Errors are sent
 * to the source as { error } and rethrown for the caller's log. One at a time per
 * destination (destination-lock.ts): another is refused, busy.
 */
export function receiveMirror(volPath: string, ch: MirrorChannel, hello: Record<string, unknown>, opts: ReceiverOptions = {}): Promise<TransferDone | null> {
  return holdingDestination(volPath, ch, hello, opts.client, () => converse(volPath, ch, hello, opts));
}

async function converse(volPath: string, ch: MirrorChannel, hello: Record<string, unknown>, opts: ReceiverOptions): Promise<TransferDone | null> {
  const log = opts.log ?? (() => {});
  try {
    if (hello.protocol !== MIRROR_PROTOCOL) throw new InvalidInputError(`mirror protocol ${String(hello.protocol)} is not supported (this side speaks ${MIRROR_PROTOCOL})`, 'run the same imgstream version on both sides');
    if (hello.op === 'mirror.break') {
      const r = breakMirror(volPath);
      await ch.send({ done: { generation: r.generation, blocks: 0, bytes: 0, deallocated: 0, resumed: 0, staged: 0 } });
      log(`mirror ${path.basename(volPath)} broken off: writable now`);
      return null;
    }
    if (hello.op === 'mirror.abandon') {
      const r = abandonPartial(volPath);
      await ch.send({ done: { generation: 0, blocks: 0, bytes: 0, deallocated: 0, resumed: 0, staged: 0, freedBytes: r.freedBytes, files: r.files, broken: isBrokenOff(volPath) } });
      if (r.files.length) log(`mirror ${path.basename(volPath)}: dropped the partial transfer (${r.files.join(', ')}, ${r.freedBytes} bytes)`);
      return null;
    }
    if (hello.op === 'mirror.state') {
      await ch.send({ state: describeDestination(volPath) });
      return null;
    }
    if (hello.op !== 'mirror.update' && hello.op !== 'mirror.resync') throw new InvalidInputError(`unknown mirror operation ${String(hello.op)}`);
    checkDestinationPath(volPath); // before the source takes its snapshot: never found out at the final link
    const geometry = hello.volume as VolumeGeometry;
    const state = describeDestination(volPath);
    // a stopped first transfer of another volume: its half-built mirror is not this source's to go on with
    const kept = state.resume && !state.exists ? readResume(sidePaths(volPath).resume) : null;
    if (kept?.base && kept.base.uuid !== geometry?.uuid) {
      state.resume = null;
      state.discarded = `dropped the stopped transfer ${kept.transferId} kept at the destination: it was building the mirror of another volume (${kept.base.uuid.slice(0, 8)})`;
    }
    if (state.discarded) {
      // (before this conversation's transfer writes its own resume file)
      dropStaleResume(volPath);
      log(`mirror ${path.basename(volPath)}: ${state.discarded}`);
    }
    if (!state.exists && hello.op === 'mirror.resync') throw new NotFoundError(NO_MIRROR, 'a new mirror starts with: imgstream mirror update');
    if (state.exists) {
      // (a resync --reverse makes the volume this source is a copy of its mirror: failback; its
      // identity and geometry are checked below. The client's hint for a resync names --reverse)
      if (!state.mirror && !(hello.op === 'mirror.resync' && hello.reverse === true)) throw new InvalidInputError(NOT_A_MIRROR, 'mirror to another name');
      if (!geometryMatches(state.geometry!, geometry)) throw new InvalidInputError(`is the mirror of another volume (${state.uuid})`, 'mirror to another name, or delete the old mirror');
      if (state.broken && hello.op === 'mirror.update') throw new InvalidInputError(BROKEN_OFF, `bring it back with: imgstream mirror resync SOURCE --to ${volPath}`);
    }
    const zstd = opts.compress !== false && Array.isArray(hello.compress) && hello.compress.includes('zstd');
    await ch.send({ state, ...(zstd ? { compress: 'zstd' } : {}) });
    const m = await ch.receive();
    if (!m) return null; // the source only wanted the state
    if (m.msg.error) {
      if (opts.sourceError) throw opts.sourceError(m.msg.error as Record<string, unknown>);
      return null;
    }
    const plan = m.msg.plan as TransferPlan | undefined;
    if (!plan || typeof plan.transferId !== 'string' || !Array.isArray(plan.snapshots)) throw new CorruptError('mirror: expected a transfer plan');
    if (!geometryMatches(plan.volume, geometry)) throw new CorruptError('mirror: the plan is for another volume');
    return await applyTransfer(volPath, ch, plan, state, log, opts.ackBytes ?? ACK_BYTES, zstd);
  } catch (err) {
    try {
      await ch.send({ error: wireError(err, volPath) });
    } catch {
      /* the connection is gone */
    }
    throw err;
  }
}
