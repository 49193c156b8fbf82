// The served volume's control ops a protect shipper needs (registered with
// registerControlOp; `serve nbd` imports this module):
//   journal.seed   takes a snapshot for the first transfer: it holds every record up to `journalTo`
//   journal.resync after an overflow (or records lost): takes a snapshot and fixes the
//                  changed blocks in dirty.json and dirty.bits; journaling resumes after `journalTo`
// Both snapshots are temporary: pinned for the asking connection, deleted when it ends.
import { InvalidInputError } from '../core/errors.js';
import { registerControlOp, type ControlSession } from '../control/ops.js';
import type { Volume } from '../volume/volume.js';
import { journalOf, type JournalWriter } from './journal-writer.js';
import { internalSnapshotName } from './internal-snapshots.js';

export interface JournalSnapshotAnswer {
  snapshot: string;
  journalTo: number;
  time: number;
}

function writerOf(vol: Volume): JournalWriter {
  const w = journalOf(vol);
  if (!w) throw new InvalidInputError(`${vol.path}: is served without a write journal`, `stop that server and serve it with: imgstream serve nbd ${vol.path} --journal`);
  return w;
}

function takeSnapshot(vol: Volume, session: ControlSession, what: 'seed' | 'resync'): string {
  session.commit();
  const name = internalSnapshotName(what, session.id);
  const e = vol.createSnapshot(name, { internal: true });
  session.pins.pin(e, { session: session.id, pid: session.pid }, { temporary: true });
  return name;
}

registerControlOp('journal.seed', (vol, _args, session): JournalSnapshotAnswer => {
  const w = writerOf(vol);
  const snapshot = takeSnapshot(vol, session, 'seed');
  return { snapshot, journalTo: w.seedPoint(), time: Date.now() };
});

registerControlOp('journal.resync', (vol, _args, session): JournalSnapshotAnswer => {
  const w = writerOf(vol);
  const snapshot = takeSnapshot(vol, session, 'resync');
  const { seq } = w.resyncPoint(snapshot);
  return { snapshot, journalTo: seq, time: Date.now() };
});
