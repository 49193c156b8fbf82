// The export.snapshot op: a read-only NBD export of a snapshot, added beside the export a
// server already offers (`serve nbd VOL --snapshot S` while VOL is served). The snapshot
// is pinned for the asking connection, so it cannot be deleted or renamed while served,
// and the export goes away with the connection (the command stopped, or was killed).
import { BusyError, InvalidInputError } from '../core/errors.js';
import { registerControlOp, stringArg } from './ops.js';

registerControlOp('export.snapshot', (vol, args, session) => {
  const host = session.exports;
  if (!host) throw new BusyError(`${vol.path}: the process serving this volume offers no NBD exports`, 'stop it, or serve the snapshot once it has stopped');
  const snapshot = stringArg(args, 'snapshot');
  const name = stringArg(args, 'name') || snapshot;
  const e = vol.snapshot(snapshot);
  if (e.shadow && e.reusedBlocks > 0) {
    throw new InvalidInputError(`${vol.path}: shadow snapshot "${snapshot}" had ${e.reusedBlocks} blocks reused and no longer holds a consistent image`, 'serve a regular snapshot instead');
  }
  const added = host.addSnapshotExport(name, snapshot);
  session.pins.pin(e, { session: session.id, pid: session.pid });
  session.onClose(() => host.removeExport(added.name));
  return { ...added, snapshot: e.name, size: vol.rootRecord.logicalSize, blockSize: vol.blockSize };
});
