// Mirror updates of a volume an NBD server holds (src/control): the server runs the two
// writing steps of a transfer (prepareSource: the top snapshot and the plane swap, in one
// CP; finishSource: emptying the shipped plane, dropping older mirror snapshots) through
// its queue, as control ops; the sender pins the snapshots of the new state and reads
// them through a lockless view. A pinned snapshot's plane and blocks never change (see
// Volume.openView), and the shipped mark-on-allocate plane is written only by
// finishSource: the server records into the other one. A replica pulled from a served
// volume (replicate pull) is sent the same way; it changes nothing on the source, so a
// server that serves it read-only sends it too.
import { NotFoundError } from '../core/errors.js';
import { assertServedWritable, registerControlOp, type ControlArgs } from '../control/ops.js';
import { ServedVolume } from '../control/served-volume.js';
import { Volume } from '../volume/volume.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { statVolume } from '../volume/volume-open.js';
import { replayIdleJournal } from '../journal/idle-journal.js';
import { finishSource, olderMirrorSnapshots, prepareSource, type FinishArgs, type PrepareArgs, type SourceAccess } from './source-access.js';

registerControlOp('mirror.prepare', (vol: Volume, args: ControlArgs, session) => {
  const p = args as unknown as PrepareArgs;
  // a replica's transfer names its top and tracks nothing: it writes nothing (prepareSource)
  if (p.top === null || p.track !== false) assertServedWritable(vol);
  // snapshots this relationship drops must not go under a reader (a dump or export
  // reading them): those it pins are deleted when it lets go
  const later = new Set<number>();
  const keep = (id: number): boolean => {
    if (!session.pins.held(id)) return false;
    later.add(id);
    return true;
  };
  const top = prepareSource(vol, { ...p, keepIds: p.keepIds ?? [] }, keep);
  for (const id of later) session.pins.deleteWhenUnpinned(id);
  session.commit();
  return { top };
});

registerControlOp('mirror.finish', (vol: Volume, args: ControlArgs, session) => {
  assertServedWritable(vol);
  const p = args as unknown as FinishArgs;
  // the transfer is complete: an older snapshot a reader still pins (a dump or an export
  // reading it) is deleted when that reader lets go, instead of failing the update
  const later = new Set(olderMirrorSnapshots(vol, p).filter((s) => session.pins.held(s.id)).map((s) => s.id));
  finishSource(vol, p, (id) => later.has(id));
  for (const id of later) session.pins.deleteWhenUnpinned(id);
  session.commit();
  return { done: true };
});

/** A source an NBD server holds, reached through its control socket. */
export function servedSource(served: ServedVolume): SourceAccess & { close(): void } {
  let view: Volume = served.openView();
  let held: string[] = [];
  const reopen = () => {
    view.close();
    view = served.openView();
    return view;
  };
  return {
    volume: () => view,
    prepare: async (p) => {
      const r = await served.request<{ top: string }>('mirror.prepare', p as unknown as Record<string, unknown>);
      reopen();
      return r.top;
    },
    hold: async (select) => {
      for (let attempt = 1; ; attempt++) {
        const names = select(view);
        try {
          await served.pin(names); // all, or none when one does not exist
        } catch (err) {
          if (!(err instanceof NotFoundError) || attempt === 5) throw err;
          reopen(); // one went since the view was read: ask again
          continue;
        }
        held = names;
        return reopen();
      }
    },
    finish: async (p) => {
      if (held.length) await served.unpin(held);
      held = [];
      await served.request('mirror.finish', p as unknown as Record<string, unknown>);
    },
    discard: async (name) => {
      if (held.length) await served.unpin(held);
      held = [];
      await served.deleteSnapshot(name);
      reopen();
    },
    close: () => view.close(),
  };
}

/**
 * The source of a transfer (mirror update, replicate pull): through its NBD server when
 * one serves it, else opened and held by this process (busy when another holds it).
 */
export async function openMirrorSource(volPath: string): Promise<{ source: Volume | SourceAccess; close(): void }> {
  const holder = VolumeLock.holder(volPath);
  if (holder?.control && holder.pid !== process.pid) {
    let served: ServedVolume | null = null;
    try {
      served = await ServedVolume.connect(volPath, holder);
    } catch {
      served = null; // nothing answers: opening it here says "busy"
    }
    if (served) {
      const s = served;
      const access = servedSource(s);
      return { source: access, close: () => (access.close(), s.close()) };
    }
  }
  const vol = Volume.open(volPath, { write: true, mirror: true });
  try {
    replayIdleJournal(vol); // its snapshot holds the writes a killed server acknowledged
  } catch (err) {
    vol.close();
    throw err;
  }
  return { source: vol, close: () => vol.close() };
}

/**
 * The uuid of the volume at `volPath`, a relationship's key (mirror status, mirror
 * abandon). It is in every root record and never changes, so it is read through a view,
 * without the lock: while a mirror update (or any other command) holds the volume,
 * `mirror status` shows that transfer rather than being refused busy.
 */
export async function sourceUuid(volPath: string): Promise<string> {
  statVolume(volPath); // the messages every command gives for a missing volume or a directory
  const view = Volume.openView(volPath);
  try {
    return view.rootRecord.uuid;
  } finally {
    view.close();
  }
}
