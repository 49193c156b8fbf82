// The mirror transfer protocol: how a source volume brings a destination volume to one of
// its states (a snapshot and every snapshot before it), block for block at the same VBNs.
// It runs over any message channel: a peer connection (src/peer), or an in-process pair
// for a destination on the same machine. Every message is a JSON object, some with a
// binary payload.
//
//   source -> destination   hello  { op: 'mirror.update' | 'mirror.resync' | 'mirror.break' | 'mirror.abandon', name, protocol, volume, pid?, compress?: ['zstd'] }
//   destination -> source   { state: DestinationState, compress?: 'zstd' }     (or { error: { code, message, hint, kept? } })
//   source -> destination   { plan: TransferPlan }
//   destination -> source   { ready: { resumeFrom, discarded? } }   records before resumeFrom were acknowledged earlier; discarded: a stopped transfer kept there that this plan is not, dropped now
//   source -> destination   { rec: i, kind: 'plane' | 'data' | 'mapdelta', crc, length, ghost?, enc? } + payload   for i = 0, 1, ...
//   destination -> source   { ack: n }                       records 0..n-1 are durable at the destination
//   source -> destination   { end: { records, chain } }
//   destination -> source   { done: TransferDone }           after the destination's CP holds the new state
//
// Records: 'plane' carries plane blocks of a snapshot the destination lacks (the PLANE
// payload of the image stream format, its snapshot index into plan.snapshots), 'data'
// carries blocks with their VBNs (the DATA payload), 'mapdelta' map blocks as their
// differences from the destination's (the MAPDELTA payload). Each record's crc32 (`crc`,
// of its full payload) is checked on arrival; `chain` is a SHA-256 chain over every
// record's index, kind, payload length and crc32, checked at the end, so the destination
// switches state only to a transfer complete and verified: a changed, lost, repeated or
// reordered record breaks it. As in the image stream format, chaining the records' crc32
// instead of hashing their payloads keeps the check from costing a second pass over the
// data (a SHA-256 of every record on both sides took half the CPU of a full transfer).
//
// Compression: the source offers zstd in its hello; a destination that takes it says so
// beside its state (one that predates it ignores the offer and answers without). Then
// DATA and PLANE payloads may travel as one zstd frame each, marked enc: 'zstd', their
// crc and length still the raw payload's (record-queue.ts); ghosts always travel raw.
//
// mirror.abandon drops what a stopped transfer kept beside the destination (the partial
// volume of a first transfer, the stage and resume files) and answers { done } with
// freedBytes; a later update starts over. An error after a transfer began carries kept:
// what remains there to resume from.
//
// One conversation at a time per destination: while one holds it (a transfer under way),
// another is answered { error: { code: 'busy' } } in place of its state, naming the
// holder (the source's pid, when its hello gave it), and nothing changes (destination-lock.ts).
//
// Resume: the destination keeps what it acknowledged (count, chain, where it put things)
// beside the volume. When the same plan comes again it answers resumeFrom = n; the source
// regenerates records 0..n-1, sends them as ghosts (payload without the block contents,
// only the VBNs or plane chunks, and the crc32 of the full record) and the destination
// checks them against its chain, so nothing acknowledged travels twice and a
// source that changed meanwhile is caught. It also reads the blocks of each ghost back
// from where it put them and checks them against its crc32 (ghost-check.ts): a volume at
// NAME that is no longer the one they went into answers RESUME_LOST, and the source starts
// over. One that plainly is not (the mirror deleted, moved away, replaced: the resume file
// records the file, uuid and CP it was written beside) is dropped before the plan, and
// the state says why (`discarded`); one that is there but is not this plan's (another
// transfer: a copy of the source volume plans its own) is dropped when the plan comes, and
// `ready` says so.
import type { SnapshotEntry } from '../format/snapshot-entry.js';

export const MIRROR_PROTOCOL = 2;

/** A message channel (a peer connection satisfies it). */
export interface MirrorChannel {
  /**
   * `payloadCrc`: the payload's crc32, when the caller has it (the channel need not
   * compute it again). `owned`: the caller never touches the payload again, so the
   * channel may resolve before the payload is on the wire (and the caller go on). When
   * `owned` is a function, the channel may call it once it is done with the payload: the
   * caller may then reuse the buffer (a channel that hands the buffer on never calls it).
   */
  send(msg: Record<string, unknown>, payload?: Buffer, payloadCrc?: number, owned?: boolean | (() => void)): Promise<void>;
  /** The next message; null when the other side ended the conversation. `payloadCrc`, when given, is the payload's crc32, checked on arrival. */
  receive(): Promise<{ msg: Record<string, unknown>; payload: Buffer | null; payloadCrc?: number | null } | null>;
  /** The caller is done with a payload receive() gave once `after` resolves (see PeerChannel.recycle); channels that allocate each payload leave it out. */
  recycle?(payload: Buffer, after: Promise<void>): void;
  close(): void;
  readonly bytesSent: number;
}

export interface VolumeGeometry {
  uuid: string;
  blockSize: number;
  nblocks: number;
  logicalSize: number;
  maxSnapshots: number;
  mapDepth: number;
}

/** What names one snapshot across volumes: the same id, name, CP and creation time. */
export interface SnapshotIdent {
  id: number;
  name: string;
  generation: number;
  createdMs: number;
  reusedBlocks: number;
}

export type PlannedSnapshot = Omit<SnapshotEntry, 'slot'>;

export interface DestinationState {
  exists: boolean;
  uuid: string | null;
  geometry: VolumeGeometry | null;
  mirror: boolean;
  broken: boolean;
  /** Each with its shadow flag (older destinations leave it out): a snapshot the source made shadow since is the same one, made shadow by the next transfer. */
  snapshots: Array<SnapshotIdent & { shadow?: boolean }>;
  /** The snapshot the destination's active file system equals (its last transfer), if any. */
  top: SnapshotIdent | null;
  /** A transfer that stopped part way, with how much of it is durable there. */
  resume: { transferId: string; planHash: string; acked: number; keptBytes?: number } | null;
  /**
   * A stopped transfer kept here that cannot resume (its records went into a volume no
   * longer at NAME as it was: moved, deleted, replaced): why, in one line. An update or
   * resync drops it before its own transfer; `resume` is null.
   */
  discarded?: string;
}

export type TransferMode = 'full' | 'moa' | 'common';

export interface TransferPlan {
  transferId: string;
  mode: TransferMode;
  volume: VolumeGeometry;
  /** The new state: every snapshot up to and including top, oldest first. */
  snapshots: PlannedSnapshot[];
  top: SnapshotIdent;
  /** Ids of the destination's snapshots that stay as they are (the others go). */
  keep: number[];
  /** Ids of the snapshots whose planes travel (the destination lacks them). */
  incoming: number[];
  /** What the records will hold, for progress. */
  blocks: number;
  bytes: number;
}

export interface TransferDone {
  generation: number;
  blocks: number;
  bytes: number;
  /** Blocks the destination held before and no longer holds (deallocated since the last transfer). */
  deallocated: number;
  /** Records acknowledged by an earlier attempt (not sent again). */
  resumed: number;
  /** Blocks that landed on VBNs the old state held, replaced through the CP's journal. */
  staged: number;
  /** The transfer's mode, top snapshot, id and the snapshots of the new state (for the receiving side's report). */
  mode?: TransferMode;
  top?: string;
  transferId?: string;
  snapshots?: number;
  /** How the records came (zstd or none). */
  compression?: 'zstd' | 'none';
  /** mirror.abandon: what it dropped. */
  freedBytes?: number;
  files?: string[];
}

export function identOf(s: Pick<SnapshotEntry, 'id' | 'name' | 'generation' | 'createdMs' | 'reusedBlocks'>): SnapshotIdent {
  return { id: s.id, name: s.name, generation: s.generation, createdMs: s.createdMs, reusedBlocks: s.reusedBlocks };
}

export function sameSnapshot(a: SnapshotIdent, b: SnapshotIdent): boolean {
  return a.id === b.id && a.name === b.name && a.generation === b.generation && a.createdMs === b.createdMs && a.reusedBlocks === b.reusedBlocks;
}

export function geometryMatches(a: VolumeGeometry, b: VolumeGeometry): boolean {
  return a.uuid === b.uuid && a.blockSize === b.blockSize && a.nblocks === b.nblocks && a.logicalSize === b.logicalSize && a.maxSnapshots === b.maxSnapshots && a.mapDepth === b.mapDepth;
}

/** An error the other side sent: { error: { code, message, hint } }. */
export interface WireError {
  code: string;
  message: string;
  hint?: string;
  /** The destination keeps this much of the stopped transfer to resume from (names beside it). */
  kept?: { bytes: number; files: string[] };
}

/** Two connected in-process channels (a destination on this machine, and tests). */
export function channelPair(): [MirrorChannel, MirrorChannel] {
  type Msg = { msg: Record<string, unknown>; payload: Buffer | null } | null;
  const make = (inbox: Msg[], waiters: Array<(m: Msg) => void>) => ({ inbox, waiters });
  const a = make([], []);
  const b = make([], []);
  let closed = false;
  const deliver = (to: typeof a, m: Msg) => {
    const w = to.waiters.shift();
    if (w) w(m);
    else to.inbox.push(m);
  };
  const side = (self: typeof a, other: typeof a): MirrorChannel => {
    let sent = 0;
    return {
      async send(msg, payload, _crc, owned) {
        if (closed) throw new Error('channel closed');
        const copy = payload ? Buffer.from(payload) : null;
        if (typeof owned === 'function') owned(); // the other side has its own copy
        sent += JSON.stringify(msg).length + (copy?.length ?? 0);
        deliver(other, { msg: JSON.parse(JSON.stringify(msg)) as Record<string, unknown>, payload: copy });
        // let the other side run, as a socket would
        await new Promise<void>((r) => setImmediate(r));
      },
      receive() {
        const m = self.inbox.shift();
        if (m !== undefined) return Promise.resolve(m);
        if (closed) return Promise.resolve(null);
        return new Promise<Msg>((r) => self.waiters.push(r));
      },
      close() {
        if (closed) return;
        closed = true;
        for (const s of [a, b]) while (s.waiters.length) s.waiters.shift()!(null);
      },
      get bytesSent() {
        return sent;
      },
    };
  };
  return [side(a, b), side(b, a)];
}

/** The receiver's refusal to update a mirror that was broken off (the source side adds the hint naming both ends). */
export const BROKEN_OFF = 'the mirror was broken off and may have changed';
/** A resync where no mirror is (a mistyped destination would otherwise get a full copy). */
export const NO_MIRROR = 'no mirror there to resync';
/** The receiver's refusal of a volume that is no mirror (a resync names the --reverse that takes it). */
export const NOT_A_MIRROR = 'holds a volume that is not a mirror';
/** The receiver's refusal to resume a transfer whose acknowledged blocks are gone (the source starts it over: run.ts). */
export const RESUME_LOST = 'the destination no longer holds what it acknowledged of the stopped transfer';
