// Running mirror operations from the command line: resolving a destination (a volume path
// on this machine, or a peer), bandwidth limits, and the schedule of `mirror start`.
import { refuseUnknownUrl } from '../media/url-like.js';
import fs from 'node:fs';
import path from 'node:path';
import { errorOfCode, ImgstreamError, InvalidInputError } from '../core/errors.js';
import { noProgress, type Progress } from '../core/progress.js';
import { Volume } from '../volume/volume.js';
import { localDestination } from './index.js';
import { BROKEN_OFF, NO_MIRROR, NOT_A_MIRROR, RESUME_LOST, identOf, MIRROR_PROTOCOL, sameSnapshot, type MirrorChannel, type SnapshotIdent } from './protocol.js';
import { abandonPartial, breakMirror, isBrokenOff, receiveMirror } from './receiver.js';
import { checkDestinationPath } from './side-files.js';
import { withDestinationLock } from './destination-lock.js';
import { destinationState, remoteError, sendMirror, stoppedError, type MirrorResult } from './sender.js';
import { MirrorState, relationshipKey, relationshipTag } from './state.js';
import { localSource } from './source-access.js';
import { openMirrorSource, sourceUuid } from './served.js';
import type { MirrorCompression } from './sender.js';
import type { Schedule } from './schedule.js';
import { peerFlagsNote } from '../peer/index.js';

export { sourceUuid };

/** Where a mirror goes: how to reach it, and its name as relationships record it. */
export interface Destination {
  /** Canonical form: an absolute path, or peer://HOST:PORT/NAME. */
  readonly spec: string;
  /** The volume's name at the destination (file name, or NAME on a peer). */
  readonly name: string;
  /** Opens a conversation; `settled` ends when the other side is done. */
  open(): Promise<{ channel: MirrorChannel; settled: Promise<void> }>;
  /** Refuses a destination no transfer could finish at, before the source is touched (a peer checks its own when asked). */
  check?(): void;
}

export type PeerOpener = (spec: string) => Destination;

let peerOpener: PeerOpener | null = null;

/** The peer layer registers how to reach peer:// destinations. */
export function setPeerOpener(open: PeerOpener): void {
  peerOpener = open;
}

export function destinationFor(spec: string): Destination {
  if (spec.startsWith('peer://')) {
    if (!peerOpener) throw new InvalidInputError(`${spec}: peer destinations are not available in this build`);
    return peerOpener(spec);
  }
  refuseUnknownUrl(spec, 'a volume path or peer://HOST:PORT/NAME');
  if (spec === '') throw new InvalidInputError('the destination path is empty', 'give a volume path or peer://HOST:PORT/NAME');
  const abs = path.resolve(spec);
  return {
    spec: abs,
    name: path.basename(abs),
    open: async () => localDestination(abs),
    check: () => checkDestinationPath(abs),
  };
}

/** Wraps a channel so that sends average at most `bytesPerSecond` (a token bucket with a quarter second of burst). */
export function rateLimited(ch: MirrorChannel, bytesPerSecond: number): MirrorChannel {
  if (!(bytesPerSecond > 0)) return ch;
  const burst = Math.max(64 << 10, bytesPerSecond / 4);
  let tokens = burst;
  let last = Date.now();
  return {
    async send(msg, payload) {
      const cost = (payload?.length ?? 0) + 64;
      for (;;) {
        const now = Date.now();
        tokens = Math.min(burst, tokens + ((now - last) / 1000) * bytesPerSecond);
        last = now;
        if (tokens >= cost || tokens >= burst) break;
        await new Promise((r) => setTimeout(r, Math.min(1000, Math.ceil(((cost - tokens) / bytesPerSecond) * 1000))));
      }
      tokens -= cost;
      return ch.send(msg, payload);
    },
    receive: () => ch.receive(),
    recycle: ch.recycle?.bind(ch),
    close: () => ch.close(),
    get bytesSent() {
      return ch.bytesSent;
    },
  };
}

export interface UpdateOptions {
  op: 'mirror.update' | 'mirror.resync';
  state?: MirrorState;
  limitRate?: number;
  progress?: Progress;
  /** Aborting cuts the transfer (it resumes next time). */
  signal?: AbortSignal;
  /** How DATA and PLANE records travel (default zstd, when the destination can take it). */
  compress?: MirrorCompression;
  /** A resync onto the volume the source is a mirror of (failback): see SendOptions. */
  reverse?: boolean;
}

/** One update run: the transfers it made, oldest first; the fields of the last one (the state the destination holds now) beside them. */
export type MirrorRun = MirrorResult & { transfers: MirrorResult[] };

/**
 * One update (or resync) of the relationship VOL -> destination. When it finishes a
 * transfer an earlier run left part way (an older state), a second transfer brings the
 * destination to now: each is reported on its own.
 */
export async function mirrorUpdate(volPath: string, dest: Destination, opts: UpdateOptions): Promise<MirrorRun> {
  dest.check?.();
  refuseSelf(volPath, dest.spec);
  const first = await mirrorUpdateOnce(volPath, dest, opts).catch(async (err: unknown) => {
    // the stopped transfer it resumed lost its acknowledged blocks at the destination (the mirror
    // copied back over from before it, say): the destination dropped it; a new transfer, as fresh
    if (opts.op === 'mirror.update' && !opts.signal?.aborted && err instanceof ImgstreamError && err.message.includes(RESUME_LOST)) {
      const again = await mirrorUpdateOnce(volPath, dest, opts);
      return { ...again, discarded: again.discarded ?? `dropped the stopped transfer kept at the destination: ${RESUME_LOST} (the mirror was replaced or changed since)` };
    }
    // the receiver knows neither the source nor the name this side gives the destination (a
    // daemon's directory, a peer URL): the hint to bring a broken-off mirror back names both
    if (err instanceof ImgstreamError && err.message.includes(BROKEN_OFF)) throw errorOfCode(err.code, err.message, `bring it back with: imgstream mirror resync ${volPath} --to ${dest.spec}${peerFlagsNote(dest.spec)}`);
    if (err instanceof ImgstreamError && err.message.includes(NO_MIRROR)) throw errorOfCode(err.code, err.message, `a new mirror starts with: imgstream mirror update ${volPath} --to ${dest.spec}${peerFlagsNote(dest.spec)}`);
    if (err instanceof ImgstreamError && err.message.includes(NOT_A_MIRROR) && opts.op === 'mirror.resync' && !opts.reverse) {
      throw errorOfCode(err.code, err.message, `mirror to another name; to fail back onto the volume ${volPath} is a mirror of (its changes since their newest common snapshot dropped): imgstream mirror resync ${volPath} --to ${dest.spec} --reverse${peerFlagsNote(dest.spec)}`);
    }
    throw err;
  });
  if (!first.resumedTransfer || opts.signal?.aborted) return { ...first, transfers: [first] };
  const second = await mirrorUpdateOnce(volPath, dest, opts);
  return { ...second, transfers: [first, second] };
}

async function mirrorUpdateOnce(volPath: string, dest: Destination, opts: UpdateOptions): Promise<MirrorResult> {
  const resyncOf = opts.op === 'mirror.resync' ? { volume: volPath, destination: dest.spec } : undefined;
  if (opts.signal?.aborted) throw stoppedError(opts.signal, resyncOf);
  const { source: vol, close } = await openMirrorSource(volPath);
  try {
    const { channel, settled } = await dest.open();
    const cut = () => channel.close();
    opts.signal?.addEventListener('abort', cut, { once: true });
    try {
      if (opts.signal?.aborted) throw stoppedError(opts.signal, resyncOf);
      return await sendMirror(vol, rateLimited(channel, opts.limitRate ?? 0), { destination: dest.spec, name: dest.name, op: opts.op, state: opts.state ?? new MirrorState(), progress: opts.progress ?? noProgress, signal: opts.signal, compress: opts.compress, volumeLabel: volPath, ...(opts.reverse ? { reverse: true } : {}) });
    } finally {
      opts.signal?.removeEventListener('abort', cut);
      channel.close();
      await settled;
    }
  } finally {
    close();
  }
}

/** A local destination that is the source volume itself (the same file, by another name or a link): refused before either is opened. */
function refuseSelf(volPath: string, spec: string): void {
  if (spec.startsWith('peer://')) return;
  let a: fs.Stats, b: fs.Stats;
  try {
    a = fs.statSync(volPath);
    b = fs.statSync(spec);
  } catch {
    return; // one of them is not there: named as such later
  }
  if (a.dev === b.dev && a.ino === b.ino) throw new InvalidInputError(`${spec}: is the source volume ${volPath} itself`, 'give another path, one that does not exist yet');
}

/** Makes a destination writable. */
export async function mirrorBreak(dest: Destination): Promise<{ destination: string; broken: boolean }> {
  if (!dest.spec.startsWith('peer://')) {
    await withDestinationLock(dest.spec, 'mirror.break', () => breakMirror(dest.spec));
    return { destination: dest.spec, broken: true };
  }
  const { channel, settled } = await dest.open();
  try {
    await channel.send({ op: 'mirror.break', name: dest.name, protocol: MIRROR_PROTOCOL, pid: process.pid });
    const m = await channel.receive();
    if (!m) throw new InvalidInputError(`${dest.spec}: no answer`);
    if (m.msg.error) {
      const { remoteError } = await import('./sender.js');
      throw remoteError(m.msg.error as { code: string; message: string }, dest.spec);
    }
    return { destination: dest.spec, broken: true };
  } finally {
    channel.close();
    await settled;
  }
}

/**
 * `mirror abandon`: drops what a stopped transfer of VOL -> destination kept at the
 * destination (see partialFiles), and the relationship's record of it; the next update
 * starts a new transfer.
 */
export async function mirrorAbandon(volPath: string, dest: Destination, state: MirrorState): Promise<{ destination: string; freedBytes: number; files: string[]; snapshot?: string; snapshotKept?: string }> {
  const uuid = await sourceUuid(volPath);
  const rel = state.get(relationshipKey(uuid, dest.spec));
  let r: { freedBytes: number; files: string[]; broken: boolean };
  if (!dest.spec.startsWith('peer://')) r = await withDestinationLock(dest.spec, 'mirror.abandon', () => ({ ...abandonPartial(dest.spec), broken: isBrokenOff(dest.spec) }));
  else {
    const { channel, settled } = await dest.open();
    try {
      await channel.send({ op: 'mirror.abandon', name: dest.name, protocol: MIRROR_PROTOCOL, pid: process.pid });
      const m = await channel.receive();
      if (!m) throw new InvalidInputError(`${dest.spec}: no answer`);
      if (m.msg.error) throw remoteError(m.msg.error as { code: string; message: string }, dest.spec);
      const done = m.msg.done as { freedBytes?: number; files?: string[]; broken?: boolean };
      r = { freedBytes: Number(done.freedBytes ?? 0), files: Array.isArray(done.files) ? done.files.map(String) : [], broken: done.broken === true };
    } finally {
      channel.close();
      await settled;
    }
  }
  const key = relationshipKey(uuid, dest.spec);
  if (state.get(key)) {
    state.update(key, () => state.get(key)!, (rel) => {
      rel.pending = null;
      rel.partial = null;
      // a resync that stopped leaves the mirror broken off, as it was
      if (rel.state === 'failed' || rel.state === 'transferring' || rel.state === 'stopped') rel.state = r.broken ? 'broken' : 'idle';
    });
  }
  // a first transfer dropped: the snapshot it took on the source is no update's base (the
  // next one takes its own), and it held the whole disk there: it goes too
  const taken = r.files.length > 0 && rel?.lastSuccess === null && rel.pending?.top.name.startsWith(`mirror.${relationshipTag(dest.spec)}.`) ? rel.pending.top : null;
  if (taken === null) return { destination: dest.spec, freedBytes: r.freedBytes, files: r.files };
  try {
    return { destination: dest.spec, freedBytes: r.freedBytes, files: r.files, ...((await dropSourceSnapshot(volPath, taken)) ? { snapshot: taken.name } : {}) };
  } catch (err) {
    // (the source busy, say): the transfer is dropped all the same; the snapshot is named for the user
    return { destination: dest.spec, freedBytes: r.freedBytes, files: r.files, snapshotKept: `${taken.name} stays on ${volPath} (${err instanceof ImgstreamError ? err.message : String(err)}): imgstream snapshot delete ${volPath} ${taken.name}` };
  }
}

/** Deletes the snapshot `s` of the source (through its server when one serves it); false when it is gone already. */
async function dropSourceSnapshot(volPath: string, s: SnapshotIdent): Promise<boolean> {
  const { source, close } = await openMirrorSource(volPath);
  try {
    const access = 'prepare' in source ? source : localSource(source);
    const here = access.volume().snapshots().find((x) => sameSnapshot(identOf(x), s));
    if (!here) return false;
    await access.discard(here.name);
    return true;
  } finally {
    close();
  }
}

/** The destination's state, as it reports it. */
export async function mirrorDestinationState(dest: Destination): Promise<import('./protocol.js').DestinationState> {
  const { channel, settled } = await dest.open();
  try {
    return await destinationState(channel, dest.name, null, dest.spec);
  } finally {
    channel.close();
    await settled;
  }
}

/** `replicate pull` from a volume on this machine (through its server when one serves it): the local counterpart of the peer service. */
export async function replicatePullLocal(sourcePath: string, destPath: string, opts: { state?: MirrorState; progress?: Progress } = {}): Promise<MirrorResult> {
  refuseSelf(sourcePath, destPath); // (it said the volume was busy: in use by this very command)
  const { source, close } = await openMirrorSource(sourcePath);
  try {
    const src = 'prepare' in source ? source.volume() : source; // a served source's view: read before the transfer replaces it
    const top = newestMaster(src);
    const master = identOf(src.snapshot(top));
    const uuid = src.rootRecord.uuid;
    const { channel, settled } = localDestination(path.resolve(destPath));
    try {
      const r = await sendMirror(source, channel, { destination: path.resolve(destPath), name: path.basename(destPath), op: 'replicate', top, state: opts.state ?? new MirrorState(), progress: opts.progress, compress: 'none' }); // in-process: no wire to save
      (opts.state ?? new MirrorState()).recordReplica(uuid, path.resolve(destPath), master);
      return r;
    } finally {
      channel.close();
      await settled;
    }
  } finally {
    close();
  }
}

/** The newest master snapshot of a volume, the point replicas pull up to. */
export function newestMaster(vol: Volume): string {
  const masters = vol.snapshots().filter((s) => s.master);
  const top = masters[masters.length - 1];
  if (!top) throw new InvalidInputError(`${vol.path}: has no master snapshot to replicate`, 'take one with: imgstream snapshot create VOL NAME --master');
  return top.name;
}

/**
 * The receiving half of `replicate pull` over a channel whose other end runs sendMirror:
 * the source speaks first. Its errors are named by `source` (peer://HOST:PORT/NAME).
 */
export async function receiveReplica(destPath: string, ch: MirrorChannel, source: string): Promise<import('./protocol.js').TransferDone | null> {
  const hello = await ch.receive();
  if (!hello) throw new InvalidInputError(`${source}: the source closed the connection`);
  const { remoteError } = await import('./sender.js');
  if (hello.msg.error) throw remoteError(hello.msg.error as { code: string; message: string }, source);
  // the source's refusal after seeing this side's state (a replica it would take back) is this command's error
  return receiveMirror(destPath, ch, hello.msg, { sourceError: (e) => remoteError(e as unknown as { code: string; message: string }, source) });
}

// ------------------------------------------------------------------ schedule

export { parseSchedule, type Schedule } from './schedule.js';

export interface RunLoopEvents {
  ran(result: MirrorRun): void;
  failed(err: Error, attempt: number): void;
  /** `signal` stopped the loop (a running transfer was cut: `err`, which the next run resumes). */
  stopped(err: Error | null): void;
  waiting(ms: number): void;
}

/**
 * `mirror start`: an update now, then one at every tick of the schedule, until `signal`
 * aborts (the current transfer is cut; the next start resumes it). A failed update is
 * retried at the next tick; errors never end the loop. `maxRuns` ends it after that many
 * runs (for tests and one-shot timers).
 */
export async function mirrorLoop(volPath: string, dest: Destination, schedule: Schedule, opts: { limitRate?: number; state?: MirrorState; signal: AbortSignal; maxRuns?: number; compress?: MirrorCompression }, on: RunLoopEvents): Promise<{ runs: number; failures: number; lastError: Error | null }> {
  let runs = 0;
  let failures = 0;
  let attempt = 0;
  /** The last run's error, when it failed (with --max-runs, what the loop ends on). */
  let lastError: Error | null = null;
  dest.check?.(); // a destination no run could finish at ends the loop before it starts
  while (!opts.signal.aborted) {
    runs++;
    try {
      on.ran(await mirrorUpdate(volPath, dest, { op: 'mirror.update', limitRate: opts.limitRate, state: opts.state, signal: opts.signal, compress: opts.compress }));
      attempt = 0;
      lastError = null;
    } catch (err) {
      if (opts.signal.aborted) {
        on.stopped(err as Error);
        return { runs, failures, lastError: null };
      }
      failures++;
      attempt++;
      lastError = err as Error;
      on.failed(err as Error, attempt);
    }
    if (opts.maxRuns !== undefined && runs >= opts.maxRuns) break;
    if (opts.signal.aborted) break; // the wait below would never see the abort
    const wait = schedule.next(new Date());
    on.waiting(wait);
    await sleepUntil(Date.now() + wait, opts.signal);
  }
  if (opts.signal.aborted) on.stopped(null);
  return { runs, failures, lastError: opts.signal.aborted ? null : lastError };
}

/** The longest a timer waits (2^31 - 1 ms, 24.8 days): a longer one fires at once, with a warning. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Resolves at `deadline` (ms since the epoch), or when `signal` aborts: in timers of at most MAX_TIMER_MS (--every 30d, a yearly --cron). */
export async function sleepUntil(deadline: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted && Date.now() < deadline) {
    await new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, Math.min(deadline - Date.now(), MAX_TIMER_MS));
      signal.addEventListener('abort', done, { once: true });
    });
  }
}
