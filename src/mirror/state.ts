// What the source side remembers of its mirror relationships: for `mirror status`, for
// resuming a transfer, and whether the mark-on-allocate planes track a relationship (then
// its next update ships the marked blocks only). Kept apart from the volume, like the
// catalog: a JSON file under the user's state directory, replaced atomically. Losing it
// costs speed, never correctness: without it an update falls back to comparing the
// snapshots both sides have.
//
// The same file holds the replicas known to pull from a volume (`replicate pull`), so a
// master snapshot a replica still needs is not deleted.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { CorruptError, FormatVersionError, InvalidInputError, fromSystemError, type StopSignal } from '../core/errors.js';
import type { SnapshotIdent, TransferMode } from './protocol.js';
import { readTextFile } from '../fs/text-file.js';
import { removeStaleTempOf } from '../fs/stale-temp.js';
import { replacementTarget } from '../fs/link-target.js';
import { makeDirectories } from '../core/make-dirs.js';
import { stateProblem } from './state-check.js';

/**
 * As stored: 'stopped' is a transfer the user stopped (a signal: lastAttempt.stoppedBy);
 * `mirror status` also reports a 'transferring' one whose process is gone as 'stopped'.
 */
export type RelationshipState = 'idle' | 'transferring' | 'failed' | 'broken' | 'stopped';

export interface Relationship {
  key: string;
  volume: { uuid: string; path: string };
  destination: string;
  state: RelationshipState;
  lastSuccess: { transferId: string; top: SnapshotIdent; finished: string; blocks: number; bytes: number; durationMs: number; mode: TransferMode } | null;
  /**
   * `pid` and `host`: the process making it (mirror status tells one killed outright from one
   * running); `stoppedBy`: the signal that stopped it (`error` says so too); `resync`: it is a
   * resync's (never resumed: the next resync starts over).
   */
  lastAttempt: { started: string; finished: string | null; error: string | null; pid?: number; host?: string; stoppedBy?: StopSignal; resync?: boolean } | null;
  /** The transfer under way or stopped part way; `bytesSent`: what its stopped attempts sent (wire bytes). */
  pending: { transferId: string; top: SnapshotIdent; mode: TransferMode; moaSwaps: number; bytesSent?: number; base?: PendingBase } | null;
  /** The latest completed transfers, oldest first (at most RECENT_TRANSFERS): one each, a resumed one and the one after it apart. */
  recent?: TransferRecord[];
  /** What a stopped transfer keeps at the destination to resume from, as it last said. */
  partial?: { transferId: string; bytes: number; since: string } | null;
  /**
   * The mark-on-allocate planes of the volume file `path` have tracked this relationship
   * since it sent `top` (with the volume's swap count then). `path` is absent in states
   * written before it was recorded: then the relationship's volume.path.
   */
  moa: { top: SnapshotIdent; swaps: number; path?: string } | null;
}

/** The destination as a transfer found it (whether NAME was there: a first transfer or not): it resumes into that only. */
export interface PendingBase {
  exists: boolean;
}

/** One completed transfer, as `mirror status` reports it. */
export interface TransferRecord {
  transferId: string;
  mode: TransferMode;
  top: SnapshotIdent;
  finished: string;
  /** Blocks the transfer carried (all its records), and those sent by the run that completed it. */
  blocks: number;
  sentBlocks: number;
  /** Wire bytes of the run that completed it, and of every attempt together (a resumed transfer's earlier runs too). */
  bytes: number;
  totalBytes: number;
  /** Records an earlier, stopped run had delivered (sent again as ghosts, without block contents). */
  resumedRecords: number;
  durationMs: number;
  compression: string;
}

export const RECENT_TRANSFERS = 8;

export interface ReplicaRecord {
  replica: string;
  top: SnapshotIdent;
  updated: string;
}

const STATE_FORMAT = 'imgstream-mirror-state';
/** The state file's format version: files written before it was recorded are version 1. */
const STATE_VERSION = 1;

interface StateFile {
  relationships: Relationship[];
  /** Volume ("uuid path") -> key of the relationship its mark-on-allocate planes track. */
  moaOwner: Record<string, string>;
  /** Volume uuid -> replicas known to pull from it. */
  replicas: Record<string, ReplicaRecord[]>;
}

export function defaultStatePath(): string {
  if (process.env.IMGSTREAM_MIRROR_STATE) return process.env.IMGSTREAM_MIRROR_STATE;
  const state = process.env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(state, 'imgstream', 'mirrors.json');
}

/** A volume file's path as relationships record it: absolute, symbolic links resolved when it exists. */
export function canonicalPath(p: string): string {
  const abs = path.resolve(p);
  try {
    return fs.realpathSync(abs);
  } catch {
    return abs;
  }
}

export function relationshipKey(uuid: string, destination: string): string {
  return `${uuid} -> ${destination}`;
}

/** Short tag naming a relationship's snapshots: mirror.<tag>.<n>. */
export function relationshipTag(destination: string): string {
  return createHash('sha256').update(destination).digest('hex').slice(0, 8);
}

/** What this version or an earlier one wrote: an object with the state's lists (a later one names its format). */
function isStateFile(s: unknown): s is Partial<StateFile> {
  if (typeof s !== 'object' || s === null || Array.isArray(s)) return false;
  const o = s as Record<string, unknown>;
  const isMap = (v: unknown) => v === undefined || (typeof v === 'object' && v !== null && !Array.isArray(v));
  if (o.format !== undefined ? o.format !== STATE_FORMAT : !Array.isArray(o.relationships)) return false;
  return (o.relationships === undefined || Array.isArray(o.relationships)) && isMap(o.moaOwner) && isMap(o.replicas);
}

export class MirrorState {
  constructor(readonly file: string = defaultStatePath()) {}

  /**
   * The state as stored; none yet when the file is missing or empty. Any other file (a
   * catalog or an image given to --state by mistake, a damaged state) is refused, never
   * read as empty: the next save would replace it with a state file.
   */
  private load(): StateFile {
    const empty = (): StateFile => ({ relationships: [], moaOwner: {}, replicas: {} });
    let text: string;
    try {
      const st = fs.statSync(this.file);
      if (st.isDirectory()) throw new InvalidInputError(`${this.file}: is a directory, not a mirror state file`, 'give --state a file name');
      if (!st.isFile()) throw new InvalidInputError(`${this.file}: is not a regular file, so it cannot be the mirror state`, 'give --state a regular file');
      text = readTextFile(this.file, 'a mirror state', this.file, 'give --state another file');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return empty();
      throw fromSystemError(err, this.file, 'reading the mirror state');
    }
    if (text.trim() === '') return empty(); // as touch or mktemp leave it
    let s: unknown = null;
    try {
      s = JSON.parse(text);
    } catch {
      // refused below
    }
    if (!isStateFile(s)) throw new CorruptError(`${this.file}: not an imgstream mirror state file`, 'give --state another file, or move this one away: without it the next update compares the snapshots both sides hold (slower, as correct)');
    // a newer imgstream's state is neither read nor rewritten without what this one does not know
    const version = (s as { version?: unknown }).version;
    if (version !== undefined && version !== STATE_VERSION) {
      throw new FormatVersionError('a mirror state file', version, [STATE_VERSION], this.file, 'use the imgstream version that wrote it, or a newer one (or point IMGSTREAM_MIRROR_STATE at another file)');
    }
    const damage = stateProblem(s as Parameters<typeof stateProblem>[0]);
    if (damage) throw new CorruptError(`${this.file}: a damaged mirror state file: ${damage}`, 'nothing was changed; move it away (without it the next update compares the snapshots both sides hold: slower, as correct), or mend that entry');
    return { relationships: s.relationships ?? [], moaOwner: s.moaOwner ?? {}, replicas: s.replicas ?? {} };
  }

  /** Reads the state once, so a file that is not one is refused before a command does anything. */
  check(): this {
    this.load();
    return this;
  }

  private save(s: StateFile): void {
    // a state file shared through a symbolic link is replaced where the link points
    const file = replacementTarget(this.file);
    makeDirectories(path.dirname(file));
    const tmp = `${file}.${process.pid}.tmp`;
    // the next versions of writers killed before their rename
    removeStaleTempOf(file);
    try {
      fs.writeFileSync(tmp, `${JSON.stringify({ format: STATE_FORMAT, version: STATE_VERSION, ...s }, null, 1)}\n`, { mode: 0o600 });
      const fd = fs.openSync(tmp, 'r');
      fs.fsyncSync(fd);
      fs.closeSync(fd);
      fs.renameSync(tmp, file);
    } catch (err) {
      fs.rmSync(tmp, { force: true });
      throw fromSystemError(err, this.file, 'writing the mirror state');
    }
  }

  relationships(uuid?: string): Relationship[] {
    return this.load().relationships.filter((r) => uuid === undefined || r.volume.uuid === uuid);
  }

  /**
   * The relationships whose source is this volume file. A mirror has its source's uuid (and
   * so have its cascade hops and replicas): the uuid alone would give each of them the
   * source's destinations.
   */
  relationshipsOf(uuid: string, volPath: string): Relationship[] {
    const file = canonicalPath(volPath);
    return this.relationships(uuid).filter((r) => canonicalPath(r.volume.path) === file);
  }

  /** The relationships whose destination is this volume file (a mirror asked about from its side). */
  relationshipsTo(uuid: string, volPath: string): Relationship[] {
    const file = canonicalPath(volPath);
    return this.relationships(uuid).filter((r) => !r.destination.includes('://') && canonicalPath(r.destination) === file);
  }

  get(key: string): Relationship | null {
    return this.load().relationships.find((r) => r.key === key) ?? null;
  }

  /** Which relationship the planes of volume `volumeKey` ("uuid path") track. */
  moaOwner(volumeKey: string): string | null {
    return this.load().moaOwner[volumeKey] ?? null;
  }

  /** Changes a relationship; with `moaOwner` (a volume key), its planes now track this relationship. */
  update(key: string, init: () => Relationship, change: (r: Relationship) => void, moaOwner?: string): Relationship {
    const s = this.load();
    let r = s.relationships.find((x) => x.key === key);
    if (!r) s.relationships.push((r = init()));
    change(r);
    if (moaOwner !== undefined) s.moaOwner[moaOwner] = key;
    this.save(s);
    return r;
  }

  replicas(uuid: string): ReplicaRecord[] {
    return this.load().replicas[uuid] ?? [];
  }

  /**
   * The known replicas that have not passed master snapshot `s` (their newest master is
   * not newer): deleting it would leave them without a common base.
   */
  replicasHolding(uuid: string, s: { id: number; master: boolean }): ReplicaRecord[] {
    if (!s.master) return [];
    return this.replicas(uuid).filter((r) => r.top.id <= s.id);
  }

  recordReplica(uuid: string, replica: string, top: SnapshotIdent): void {
    const s = this.load();
    const list = (s.replicas[uuid] ??= []);
    const at = list.findIndex((r) => r.replica === replica);
    const rec = { replica, top, updated: new Date().toISOString() };
    if (at >= 0) list[at] = rec;
    else list.push(rec);
    this.save(s);
  }
}

/**
 * The state `mirror status` reports: a transfer recorded as under way whose process on
 * this host is gone (killed outright, so it could not say) is 'stopped'; the next update
 * resumes it.
 */
/** As `mirror status` reports a relationship: also 'missing', a local destination made once and no longer there (deleted or moved). */
export type ReportedState = RelationshipState | 'missing';

export function reportedState(r: Relationship): ReportedState {
  const state = liveState(r);
  // a destination made once and gone since; a first transfer stopped part way has none yet
  if ((state === 'idle' || state === 'failed' || state === 'broken' || state === 'stopped') && r.lastSuccess !== null && !r.destination.includes('://') && !fs.existsSync(r.destination)) return 'missing';
  return state;
}

function liveState(r: Relationship): RelationshipState {
  const a = r.lastAttempt;
  if (r.state !== 'transferring' || !a?.pid || a.host !== os.hostname()) return r.state;
  try {
    process.kill(a.pid, 0);
    return r.state;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ESRCH' ? 'stopped' : r.state;
  }
}
