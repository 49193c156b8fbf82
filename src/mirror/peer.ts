// Mirroring over a peer connection (src/peer): the daemon's services for the receiving
// side (mirror.update, mirror.resync, mirror.state, mirror.break, mirror.abandon on the volume DIR/NAME)
// and the sending side of replicate.pull (the daemon's DIR/NAME is the source), and how
// clients reach a peer destination.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError, NotFoundError } from '../core/errors.js';
import { connectPeer, formatPeerUrl, parsePeerUrl, registerPeerService, peerServices, type PeerChannel, type PeerClientOptions } from '../peer/index.js';
import { Volume } from '../volume/volume.js';
import { MIRROR_PROTOCOL, identOf, type MirrorChannel } from './protocol.js';
import { receiveMirror } from './receiver.js';
import { sendMirror, type MirrorResult } from './sender.js';
import { MirrorState } from './state.js';
import { newestMaster, receiveReplica, type Destination } from './run.js';
import { openMirrorSource } from './served.js';

/** A peer channel as the mirror code speaks to it. */
export function mirrorChannel(ch: PeerChannel): MirrorChannel {
  return {
    send: (msg, payload, payloadCrc, owned) => (owned && payload ? ch.sendOwned(msg, payload, payloadCrc, typeof owned === 'function' ? owned : undefined) : ch.send(msg, payload, payloadCrc)),
    receive: () => ch.receive(),
    recycle: (payload, after) => ch.recycle(payload, after),
    close: () => void ch.close(),
    get bytesSent() {
      return ch.bytesSent;
    },
  };
}

/** Registers the mirror services on every peer daemon started afterwards (once). */
export function registerMirrorServices(): void {
  if (peerServices().has('mirror.update')) return;
  for (const op of ['mirror.update', 'mirror.resync', 'mirror.state', 'mirror.break', 'mirror.abandon']) {
    registerPeerService(op, async (ch, hello, ctx) => {
      // who a transfer refused meanwhile is told holds the destination (the source's pid: its hello's)
      const client = Number.isInteger(hello.pid) && (hello.pid as number) > 0 ? `imgstream process ${hello.pid} at ${ctx.peer}` : `a client at ${ctx.peer}`;
      const done = await receiveMirror(ctx.path, mirrorChannel(ch), hello, { log: (l) => ctx.log(l), client });
      if (done) ctx.log(`${op} ${hello.name}: ${done.mode} to ${done.top}, ${done.blocks} blocks, CP ${done.generation}${done.resumed ? `, resumed after ${done.resumed} records` : ''}`);
    });
  }
  registerPeerService('replicate.pull', async (ch, hello, ctx) => {
    const replica = typeof hello.replica === 'string' && hello.replica.length < 512 ? hello.replica : ctx.peer;
    // through its NBD server when one serves it (see served.ts)
    let opened: Awaited<ReturnType<typeof openMirrorSource>>;
    try {
      opened = await openMirrorSource(ctx.path);
    } catch (err) {
      // the hint a local open gives ("create one with: imgstream volume create") is no use to a client
      if (err instanceof NotFoundError) throw new NotFoundError(`${String(hello.name)}: no such volume on the peer`, 'give the name of a volume in the daemon\'s --root directory');
      throw err;
    }
    const { source, close } = opened;
    try {
      const vol = 'prepare' in source ? source.volume() : source;
      let top: string;
      try {
        top = newestMaster(vol);
      } catch {
        throw new InvalidInputError(`${String(hello.name)}: has no master snapshot to replicate`, 'take one on the source with: imgstream snapshot create VOL NAME --master');
      }
      const master = identOf(vol.snapshot(top));
      const uuid = vol.rootRecord.uuid;
      const state = new MirrorState();
      // named by its file name in messages: the daemon shows no absolute path to clients, so the replica's own would read "(a path on the daemon)"
      const r = await sendMirror(source, mirrorChannel(ch), { destination: `replica ${path.basename(replica)}`, name: String(hello.name), op: 'replicate', top, state });
      state.recordReplica(uuid, replica, master);
      ctx.log(`replicate.pull ${hello.name} by ${replica}: ${r.upToDate ? 'up to date' : `${r.mode} to ${r.top}, ${r.blocks} blocks`}`);
    } finally {
      close();
    }
  });
}

/** peer://HOST:PORT/NAME as a mirror destination. */
export function peerDestination(spec: string, opts: PeerClientOptions): Destination {
  const u = parsePeerUrl(spec, { requireName: true });
  return {
    spec: formatPeerUrl(u),
    name: u.name!,
    open: async () => ({ channel: mirrorChannel(await connectPeer(u, opts)), settled: Promise.resolve() }),
  };
}

/** The replica's newest snapshot and how many it has: where it is when the daemon had nothing to send. */
function replicaAt(volPath: string): { top: string; snapshots: number } {
  if (!fs.existsSync(volPath)) return { top: '', snapshots: 0 };
  const vol = Volume.open(volPath, { write: false });
  try {
    return { top: vol.snapshots().at(-1)?.name ?? '', snapshots: vol.snapshots().length };
  } finally {
    vol.close();
  }
}

/** `replicate pull VOL --from peer://...`: the daemon sends, this process receives. */
export async function replicatePullPeer(volPath: string, spec: string, opts: PeerClientOptions): Promise<MirrorResult> {
  const u = parsePeerUrl(spec, { requireName: true });
  const started = Date.now();
  const ch = await connectPeer(u, opts);
  try {
    await ch.send({ op: 'replicate.pull', name: u.name!, protocol: MIRROR_PROTOCOL, replica: path.resolve(volPath) });
    const done = await receiveReplica(path.resolve(volPath), mirrorChannel(ch), formatPeerUrl(u));
    // as a local pull reports it: up to date, no transfer (compared by the snapshots both hold)
    const at = done === null ? replicaAt(path.resolve(volPath)) : null;
    return {
      destination: path.resolve(volPath),
      transferId: done?.transferId ?? '',
      mode: done?.mode ?? 'common',
      top: done?.top ?? at!.top,
      snapshots: done?.snapshots ?? at!.snapshots,
      blocks: done?.blocks ?? 0,
      planBlocks: done?.blocks ?? 0,
      bytes: ch.bytesReceived,
      dataBytes: done?.bytes ?? 0,
      resumedRecords: done?.resumed ?? 0,
      mapDeltas: 0,
      deallocated: done?.deallocated ?? 0,
      staged: done?.staged ?? 0,
      generation: done?.generation ?? 0,
      durationMs: Date.now() - started,
      upToDate: done === null,
      resumedTransfer: (done?.resumed ?? 0) > 0, // (records an earlier attempt delivered: a transfer stopped part way)
      totalBytes: ch.bytesReceived,
      compression: done?.compression ?? 'none',
    };
  } finally {
    await ch.close();
  }
}

