// Restore and export as of a time from a protection destination on a peer daemon
// (protect.export in protect-service.ts): the daemon rebuilds the disk as of the time and
// sends its non-zero pieces; here they become a raw image or a new volume. A volume
// rebuilt this way holds the disk only (not the base's snapshots, which stay on the peer).
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, ExistsError, NetworkError, fromSystemError } from '../core/errors.js';
import { errorOf, type PeerErrorBody } from '../format/peer-protocol.js';
import { checkPeerClientOptions, connectPeer, errorFromWire, formatPeerUrl, parsePeerUrl, type PeerClientOptions } from '../peer/index.js';
import { noProgress, type Progress } from '../core/progress.js';
import { removeStaleTemp, tempBeside } from '../fs/stale-temp.js';
import { refuseDanglingLink } from '../fs/link-target.js';
import { removeOnStop } from '../fs/stop-cleanup.js';
import { writeLogicalBytes } from '../volume/logical-io.js';
import { Volume } from '../volume/volume.js';
import type { FileSink } from '../volume/image-io.js';
import type { ProtectedSource } from './destination-api.js';
import type { AsOfResult } from './restore-as-of.js';
import { escapeRegExp } from '../core/regexp.js';

interface ImageWriter {
  writeAt(offset: number, data: Buffer): Promise<void> | void;
  finish(): Promise<void> | void;
  discard(): void;
}

/** Bytes written to a restored volume between two CPs. */
const CP_BYTES = 64 << 20;

async function receiveImage(spec: string, asOf: string, opts: PeerClientOptions, progress: Progress, open: (size: number, source: ProtectedSource) => ImageWriter): Promise<AsOfResult & { bytes: number }> {
  const u = parsePeerUrl(spec, { requireName: true });
  const where = formatPeerUrl(u);
  checkPeerClientOptions(opts, where);
  const ch = await connectPeer(u, opts);
  let out: ImageWriter | null = null;
  try {
    await ch.send({ op: 'protect.export', name: u.name, asOf });
    let size = 0;
    for (;;) {
      const m = await ch.receive();
      if (m === null) throw new NetworkError(`peer ${ch.peer}: the daemon closed the connection in the middle of the image`, 'see its log');
      const e = errorOf(m.msg);
      if (e) throw errorFromWire(asClientNamesIt(e, u.name, where), ch.peer);
      const msg = m.msg;
      if (msg.type === 'image' && !out) {
        size = Number(msg.size);
        out = open(size, msg.source as ProtectedSource);
        progress.start('restoring', size, 'bytes');
      } else if (msg.type === 'data' && out && m.payload) {
        const offset = Number(msg.offset);
        if (!Number.isSafeInteger(offset) || offset < 0 || offset + m.payload.length > size) throw new CorruptError(`peer ${ch.peer}: image data outside the disk`);
        await out.writeAt(offset, m.payload);
        progress.update(offset + m.payload.length);
      } else if (msg.type === 'done' && out) {
        await out.finish();
        const r = msg.result as AsOfResult & { bytes: number };
        return { ...r, destination: where };
      } else throw new CorruptError(`peer ${ch.peer}: unexpected answer ${JSON.stringify(msg).slice(0, 80)}`, 'the daemon does not speak this protocol version');
    }
  } catch (err) {
    out?.discard();
    throw err;
  } finally {
    progress.stop();
    await ch.close();
  }
}

/** volume export peer://…/NAME --as-of TIME: the raw image into the sink. */
export function peerExportAsOf(spec: string, asOf: string, opts: PeerClientOptions, sinkFor: (size: number) => FileSink, progress: Progress = noProgress): Promise<AsOfResult & { bytes: number }> {
  return receiveImage(spec, asOf, opts, progress, (size) => {
    const sink = sinkFor(size);
    let pos = 0;
    return {
      async writeAt(offset, data) {
        if (offset > pos) {
          if (sink.skip) sink.skip(offset - pos);
          else await sink.write(Buffer.alloc(offset - pos));
        }
        await sink.write(data);
        pos = offset + data.length;
      },
      async finish() {
        if (size > pos) {
          if (sink.skip) sink.skip(size - pos);
          else await sink.write(Buffer.alloc(size - pos));
        }
        await sink.finish();
      },
      discard: () => sink.discard(),
    };
  });
}

/** restore --to NEW --as-of TIME --from peer://…/NAME: a new volume with the source's identity and geometry holding the disk. */
export async function peerRestoreAsOf(spec: string, asOf: string, to: string, opts: PeerClientOptions, progress: Progress = noProgress): Promise<AsOfResult> {
  if (fs.existsSync(to)) throw new ExistsError(`${to}: already exists`, 'restore as of a time into a new volume');
  refuseDanglingLink(to, 'restore as of a time into a new volume: give --to a path that does not exist, or remove the link');
  const { dir: parent, prefix } = tempBeside(to, 'restoring');
  removeStaleTemp(parent, prefix);
  const tmp = path.join(parent, `${prefix}${process.pid}`);
  const kept = removeOnStop(tmp); // Ctrl-C or kill: no half-received volume left beside it
  let vol: Volume | null = null;
  try {
    return await receiveImage(spec, asOf, opts, progress, (size, source) => {
      fs.rmSync(tmp, { force: true });
      Volume.create(tmp, { size, blockSize: source.blockSize, uuid: source.uuid });
      const v = Volume.open(tmp, { write: true });
      vol = v;
      let sinceCp = 0;
      return {
        writeAt(offset, data) {
          writeLogicalBytes(v, offset, data);
          sinceCp += data.length;
          if (sinceCp >= CP_BYTES) {
            v.commit();
            sinceCp = 0;
          }
        },
        finish() {
          v.commit();
          v.file.sync();
          v.close();
          vol = null;
          try {
            fs.linkSync(tmp, to);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new ExistsError(`${to}: appeared while restoring`, 'restore again');
            throw fromSystemError(err, to, 'creating the volume');
          }
        },
        discard() {},
      };
    });
  } catch (err) {
    if (err instanceof Error) err.message = err.message.split(tmp).join(to);
    throw err;
  } finally {
    (vol as Volume | null)?.close();
    fs.rmSync(tmp, { force: true });
    kept();
  }
}

/**
 * The daemon names the destination by NAME (its paths hidden); the commands its hints
 * give are run here, where NAME is a local path: they name the destination as the client
 * gave it, with the peer flags it needs.
 */
function asClientNamesIt(e: PeerErrorBody, name: string, url: string): PeerErrorBody {
  const bare = new RegExp(`(^|[\\s(])${escapeRegExp(name)}(?=[\\s:,;)]|$)`, 'g');
  const hint = e.hint?.replace(/imgstream protect status (\S+)( --points)?/g, (all, dest: string, points = '') => (dest === name ? `imgstream protect status ${url}${points}, with the same --token-file and TLS flags` : all));
  return { ...e, message: e.message.replace(bare, `$1${url}`), ...(hint !== undefined ? { hint } : {}) };
}

