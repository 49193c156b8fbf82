// What a server's control socket can be asked: one registry of ops, each a function of
// the served volume, the request's args and the asking connection. The server runs every
// op through its NBD export's queue (nbd-export.ts runExclusive), so an op never sees a
// request half applied and never runs during a CP; an op may change the volume (the
// Volume API is synchronous) and may return a promise (the queue waits for it).
//
// Ops provided here: snapshot.create, snapshot.delete, snapshot.rename, snapshot.shadow, snapshot.list,
// info, image, check, cp, pin and unpin. Other modules add theirs with
// registerControlOp (e.g. mirror.*); the answer must be plain JSON.
import { BusyError, InvalidInputError } from '../core/errors.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import { checkVolume } from '../volume/check.js';
import { volumeInfo } from '../volume/info.js';
import { storageImageOf } from '../volume/storage-image-of.js';
import type { Volume } from '../volume/volume.js';
import type { PinTable } from './pins.js';

/** The control connection an op runs for. */
export interface ControlSession {
  /** Unique among the server's connections. */
  readonly id: number;
  /** The client's process id, as it introduced itself ("hello"). */
  readonly pid: number | null;
  /** Every connection's pins (see pins.ts): an op that deletes or renames a snapshot must respect them. */
  readonly pins: PinTable;
  /** Takes a consistency point now if anything changed, through the server (its stats count it); returns the generation. */
  commit(): number;
  /** Runs fn, through the queue, when this connection ends (closed, or its client killed): release what it holds. */
  onClose(fn: (vol: Volume) => void | Promise<void>): void;
  /** The server's NBD exports, when it can add some (serve nbd): see snapshot-export.ts. */
  readonly exports: ExportHost | null;
}

/** A server that can offer more NBD exports while it serves (called from within an op). */
export interface ExportHost {
  /** Adds a read-only export of `snapshot` named `name`; answers how clients reach it. */
  addSnapshotExport(name: string, snapshot: string): { name: string; uri: string };
  removeExport(name: string): void;
}

export type ControlArgs = Record<string, unknown>;
export type ControlOpHandler = (vol: Volume, args: ControlArgs, session: ControlSession) => unknown;

const registry = new Map<string, ControlOpHandler>();

/** Makes `op` answerable by every server started afterwards in this process. */
export function registerControlOp(op: string, handler: ControlOpHandler): void {
  if (registry.has(op)) throw new Error(`control op "${op}" is registered twice`);
  registry.set(op, handler);
}

export function controlOp(op: string): ControlOpHandler | undefined {
  return registry.get(op);
}

export function controlOpNames(): string[] {
  return [...registry.keys()].sort();
}

// ---------------------------------------------------------------- argument checks

function bad(key: string, what: string): InvalidInputError {
  return new InvalidInputError(`control request: "${key}" must be ${what}`);
}

export function stringArg(args: ControlArgs, key: string): string {
  const v = args[key];
  if (typeof v !== 'string') throw bad(key, 'a string');
  return v;
}

export function booleanArg(args: ControlArgs, key: string): boolean {
  const v = args[key] ?? false;
  if (typeof v !== 'boolean') throw bad(key, 'true or false');
  return v;
}

export function stringListArg(args: ControlArgs, key: string): string[] {
  const v = args[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw bad(key, 'a list of strings');
  return v as string[];
}

/** Refuses a change on a volume the server opened read-only. */
export function assertServedWritable(vol: Volume): void {
  if (!vol.writable) {
    throw new BusyError(`${vol.path}: volume is served read-only by imgstream process ${process.pid}`, 'stop the server, or serve the volume read-write, to change its snapshots');
  }
}

/** Deletes the temporary snapshots (ids) nobody pins any more. */
export function dropTemporaries(vol: Volume, pins: PinTable, ids: number[]): void {
  for (const id of ids) {
    const e = vol.snapshots().find((s) => s.id === id);
    if (e && !pins.isPinned(id)) vol.deleteSnapshot(e.name);
    pins.forget(id);
  }
}

// ---------------------------------------------------------------- the ops

registerControlOp('snapshot.list', (vol) => vol.snapshots());

/**
 * {name, shadow?, master?, pin?, temporary?}: the snapshot is the state of a CP
 * (createSnapshot commits first). pin: pinned for this connection at once (no window in
 * which it could be deleted); temporary: pinned, and deleted when nobody pins it any more.
 */
registerControlOp('snapshot.create', (vol, args, session) => {
  assertServedWritable(vol);
  const name = stringArg(args, 'name');
  const temporary = booleanArg(args, 'temporary');
  const e = vol.createSnapshot(name, { shadow: booleanArg(args, 'shadow'), master: booleanArg(args, 'master'), internal: temporary });
  if (temporary || booleanArg(args, 'pin')) session.pins.pin(e, { session: session.id, pid: session.pid }, { temporary });
  return e;
});

/** {name, whenUnpinned?}: whenUnpinned: while others pin it, deleted once the last lets go (see pins.ts). */
registerControlOp('snapshot.delete', (vol, args, session) => {
  assertServedWritable(vol);
  const e = vol.snapshot(stringArg(args, 'name'));
  if (booleanArg(args, 'whenUnpinned') && session.pins.held(e.id)) {
    session.pins.deleteWhenUnpinned(e.id);
    return e;
  }
  session.pins.assertUnpinned(vol.path, e, 'deleted');
  vol.deleteSnapshot(e.name);
  session.pins.forget(e.id);
  return e;
});

registerControlOp('snapshot.rename', (vol, args, session) => {
  assertServedWritable(vol);
  const e = vol.snapshot(stringArg(args, 'from'));
  const to = stringArg(args, 'to');
  if (to !== e.name) session.pins.assertUnpinned(vol.path, e, 'renamed');
  return vol.renameSnapshot(e.name, to);
});

/** {name}: the snapshot becomes a shadow one (not while a reader pins it: its blocks could be reused under the read). */
registerControlOp('snapshot.shadow', (vol, args, session) => {
  assertServedWritable(vol);
  const e = vol.snapshot(stringArg(args, 'name'));
  if (!e.shadow) session.pins.assertUnpinned(vol.path, e, 'made a shadow snapshot');
  return vol.shadowSnapshot(e.name);
});

/** volume info as of a CP taken now (the same figures `volume info` shows of an idle volume). */
registerControlOp('info', (vol, _args, session) => {
  session.commit();
  return volumeInfo(vol);
});

/** {expression, ranges?}: evaluated here, over the planes as they are between two requests. */
registerControlOp('image', (vol, args) => storageImageOf(vol, stringArg(args, 'expression'), { ranges: booleanArg(args, 'ranges') }));

/** volume check of a CP taken now. */
registerControlOp('check', (vol, _args, session) => {
  session.commit();
  return checkVolume(vol);
});

registerControlOp('cp', (_vol, _args, session) => ({ generation: session.commit() }));

/**
 * {names}: pins snapshots for this connection (all or, when one does not exist, none) and
 * answers their entries: a reader then opens a view (Volume.openView) and checks it sees
 * the same ids.
 */
registerControlOp('pin', (vol, args, session): SnapshotEntry[] => {
  const entries = stringListArg(args, 'names').map((n) => vol.snapshot(n));
  for (const e of entries) session.pins.pin(e, { session: session.id, pid: session.pid });
  return entries;
});

/** {names}: drops this connection's pins (names it does not pin are ignored). */
registerControlOp('unpin', (vol, args, session) => {
  const names = stringListArg(args, 'names');
  const orphans: number[] = [];
  for (const n of names) {
    const e = vol.snapshots().find((s) => s.name === n);
    if (e) orphans.push(...session.pins.unpin(e.id, session.id));
  }
  if (orphans.length && vol.writable) dropTemporaries(vol, session.pins, orphans);
  return { unpinned: names };
});
