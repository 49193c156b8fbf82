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
import type { SnapshotIdent, TransferMode } from './protocol.js';

export type RelationshipState = 'idle' | 'transferring' | 'failed' | 'broken';

export interface Relationship {
  key: string;
  volume: { uuid: string; path: string };
  destination: string;
  state: RelationshipState;
  lastSuccess: { transferId: string; top: SnapshotIdent; finished: string; blocks: number; bytes: number; durationMs: number; mode: TransferMode } | null;
  lastAttempt: { started: string; finished: string | null; error: string | null } | null;
  pending: { transferId: string; top: SnapshotIdent; mode: TransferMode; moaSwaps: number } | null;
  /** The mark-on-allocate planes have tracked this relationship since it sent `top` (with the volume's swap count then). */
  moa: { top: SnapshotIdent; swaps: number } | null;
}

export interface ReplicaRecord {
  replica: string;
  top: SnapshotIdent;
  updated: string;
}

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

export function relationshipKey(uuid: string, destination: string): string {
  return `${uuid} -> ${destination}`;
}

/** Short tag naming a relationship's snapshots: mirror.<tag>.<n>. */
export function relationshipTag(destination: string): string {
  return createHash('sha256').update(destination).digest('hex').slice(0, 8);
}

export class MirrorState {
  constructor(readonly file: string = defaultStatePath()) {}

  private load(): StateFile {
    try {
      const s = JSON.parse(fs.readFileSync(this.file, 'utf8')) as StateFile;
      return { relationships: s.relationships ?? [], moaOwner: s.moaOwner ?? {}, replicas: s.replicas ?? {} };
    } catch {
      return { relationships: [], moaOwner: {}, replicas: {} };
    }
  }

  private save(s: StateFile): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    const tmp = `${this.file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, `${JSON.stringify(s, null, 1)}\n`, { mode: 0o600 });
    const fd = fs.openSync(tmp, 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fs.renameSync(tmp, this.file);
  }

  relationships(uuid?: string): Relationship[] {
    return this.load().relationships.filter((r) => uuid === undefined || r.volume.uuid === uuid);
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
