// volume export of a volume whoever holds it. Opened here: as always. Served: a
// snapshot is pinned in the server and read through a lockless view; the active file
// system is exported as a temporary snapshot the server takes for it (the state of a CP
// taken now: every write the server received before), pins, and deletes when the export
// ends, or when its connection does (a killed export leaves nothing behind). A server
// that serves the volume read-only never changes it: its active file system is read as is.
import { VolumeFullError } from '../core/errors.js';
import type { ExportResult } from '../volume/export.js';
import { exportImage } from '../volume/export.js';
import type { FileSink } from '../volume/image-io.js';
import { noProgress, type Progress } from '../core/progress.js';
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { Volume } from '../volume/volume.js';
import { openVolumeAccess } from './access.js';

/** The output, made once the volume's logical size is known. */
export type SinkFor = (logicalSize: number) => FileSink;

async function exportTo(vol: Volume, snapshot: string | undefined, sinkFor: SinkFor, progress: Progress, verify?: () => Promise<void>): Promise<ExportResult> {
  const sink = sinkFor(vol.rootRecord.logicalSize);
  try {
    const r = await exportImage(vol, snapshot, sink, progress);
    await verify?.();
    await sink.finish();
    return r;
  } catch (err) {
    sink.discard();
    throw err;
  }
}

/** Exports the active file system (snapshot undefined) or a snapshot of the volume at `path`. */
export async function exportVolumeAt(path: string, snapshot: string | undefined, sinkFor: SinkFor, progress: Progress = noProgress): Promise<ExportResult> {
  // a snapshot is whole on a volume whose restore is unfinished (only its active disk is mixed)
  const access = await openVolumeAccess(path, { write: false, unfinishedRestore: snapshot !== undefined });
  if (access.kind === 'local') {
    try {
      if (snapshot !== undefined) access.volume.snapshot(snapshot); // fail before creating any output
      return await exportTo(access.volume, snapshot, sinkFor, progress);
    } finally {
      access.close();
    }
  }
  const served = access;
  let view: Volume | null = null;
  let pinned: string | null = null;
  try {
    if (snapshot === undefined && served.readOnly) {
      view = served.openView();
      return await exportTo(view, undefined, sinkFor, progress);
    }
    let name = snapshot;
    if (name === undefined) {
      name = `imgstream-export-${process.pid}-${Date.now()}`;
      try {
        await served.createSnapshot(name, { temporary: true });
      } catch (err) {
        // the user asked for no snapshot: say why one is needed, and the way without
        if (err instanceof VolumeFullError && /snapshot slot/.test(err.message)) {
          throw new VolumeFullError(`${path}: the export of a served volume's active disk reads a temporary snapshot of it, and ${err.message.replace(/^.*?: (?=(all \d+ snapshot slots are|its one snapshot slot is) in use)/, '')}`, `free one (imgstream snapshot delete ${path} NAME), or export a snapshot, which needs none: imgstream volume export ${path}@SNAPSHOT`);
        }
        throw err;
      }
    } else await served.pin([name]);
    pinned = name;
    view = served.openView();
    const seen: SnapshotEntry = view.snapshot(name); // pinned: the view holds the same snapshot
    const r = await exportTo(view, name, sinkFor, progress, () => served.verifyUnchanged([seen]));
    return snapshot === undefined ? { ...r, snapshot: null } : r;
  } finally {
    view?.close();
    // a temporary snapshot is deleted as its pin goes; closing the connection would do it too, a moment later
    if (pinned !== null) await served.unpin([pinned]).catch(() => {});
    served.close();
  }
}
