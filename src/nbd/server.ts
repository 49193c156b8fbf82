// serveNbd: opens a volume, offers it as one NBD export on a TCP address or a Unix
// socket to any number of connections, and runs until its AbortSignal fires; then it
// stops listening, lets the connections send what they have queued, takes the last
// consistency point and closes the volume. While it serves, it answers other imgstream
// commands on a control socket (../control): snapshots, images, checks, and pins for
// dumps and exports, all run through the export's queue.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { BusyError, ExistsError, InvalidInputError, IoError, NetworkError, NotFoundError, UsageError, fromSystemError } from '../core/errors.js';
import { JournalWriter, type JournalRecovery } from '../journal/journal-writer.js';
import { replayIdleJournal } from '../journal/idle-journal.js';
import { Volume } from '../volume/volume.js';
import { VolumeLock } from '../volume/volume-lock.js';
import { ControlServer } from '../control/control-server.js';
import { ServedVolume } from '../control/served-volume.js';
import type { ExportHost } from '../control/ops.js';
import { NbdConnection } from './connection.js';
import { NbdExport, type NbdExportStats } from './nbd-export.js';
import { nbdUri, type ListenAddress } from './listen-address.js';

export interface ServeNbdOptions {
  volume: string;
  /** Where to listen: a TCP host and port (port 0: any free port) or a Unix socket path. */
  listen: ListenAddress;
  /** Serve this snapshot, read-only. */
  snapshot?: string;
  readOnly?: boolean;
  /** Milliseconds between timed consistency points; 0 turns them off (FLUSH, FUA and shutdown still commit). */
  cpIntervalMs: number;
  /** The export's name (default ""): clients asking for "" get it too. */
  exportName?: string;
  /** Milliseconds a client gets to complete the handshake (default 10 s; 0: no limit). */
  handshakeMs?: number;
  /** The caller chose `listen` (not a default): a snapshot cannot be served beside a served volume there. */
  listenChosen?: boolean;
  /** Keep the volume's write journal (continuous protection): every change time-stamped, for `imgstream protect`. */
  journal?: { limitBytes: number };
}

/** What a client needs to connect, reported once the server listens. */
export interface NbdListening {
  uri: string;
  host?: string;
  port?: number;
  socket?: string;
  exportName: string;
  volume: string;
  snapshot: string | null;
  readOnly: boolean;
  size: number;
  blockSize: number;
  /** The process that serves the export, when it is another (a snapshot served beside its volume). */
  servedBy?: number;
  /** With --journal: where it is and what its recovery did at start. */
  journal?: { dir: string; lastSeq: number; overflowed: boolean } & JournalRecovery;
}

export interface NbdServeResult extends NbdExportStats {
  volume: string;
  /** Set when another process served the export (see NbdListening.servedBy). */
  servedBy?: number;
  connections: number;
  /** The volume's CP generation after the last consistency point. */
  generation: number;
  /** With a journal: its last record, and what its recovery found at start. */
  journal?: { lastSeq: number; overflowed: boolean } & JournalRecovery;
}

export interface NbdServeHooks {
  /** Stops the server (SIGINT, SIGTERM in the CLI). */
  signal: AbortSignal;
  listening?(info: NbdListening): void;
  /** Failures no client can be told about (a timed CP that failed, a bug). */
  problem?(message: string): void;
}

/** How long connections get to send their last replies at shutdown before they are cut. */
const SHUTDOWN_GRACE_MS = 2000;

export async function serveNbd(opts: ServeNbdOptions, hooks: NbdServeHooks): Promise<NbdServeResult> {
  if (!Number.isFinite(opts.cpIntervalMs) || opts.cpIntervalMs < 0) throw new InvalidInputError(`invalid CP interval ${opts.cpIntervalMs} ms`, 'use a number of seconds, 0 or more');
  if (opts.listen.socket !== undefined) checkSocketPath(opts.listen.socket);
  if (opts.snapshot !== undefined) {
    const beside = await serveSnapshotBeside(opts, hooks);
    if (beside) return beside;
  }
  const readOnly = !!opts.readOnly || opts.snapshot !== undefined;
  if (opts.journal && readOnly) throw new InvalidInputError(`${opts.volume}: a read-only export changes nothing to journal`, 'drop --journal, or serve the active file system read-write');
  const vol = Volume.open(opts.volume, { write: !readOnly });
  let journal: JournalWriter | null = null;
  let exp: NbdExport;
  const conns = new Set<NbdConnection>();
  let server: net.Server | null = null;
  let control: ControlServer | null = null;
  let connections = 0;
  try {
    if (opts.snapshot !== undefined) {
      const s = vol.snapshot(opts.snapshot);
      if (s.shadow && s.reusedBlocks > 0) {
        throw new InvalidInputError(`${vol.path}: shadow snapshot "${opts.snapshot}" had ${s.reusedBlocks} blocks reused and no longer holds a consistent image`, 'serve a regular snapshot instead');
      }
    }
    if (opts.journal) journal = JournalWriter.open(vol, { limitBytes: opts.journal.limitBytes, report: (m) => hooks.problem?.(m) });
    else if (!readOnly) {
      // served without --journal after a server with one was killed: the writes it acknowledged after its last CP first
      const replay = replayIdleJournal(vol);
      if (replay?.recorded && replay.replayed > 0) hooks.problem?.(`${vol.path}: ${replay.replayed} writes its write journal held past the last CP were replayed (a server with --journal stopped without its last CP); this server does not journal its writes`);
    }
    exp = new NbdExport(vol, { name: opts.exportName ?? '', snapshot: opts.snapshot, readOnly, journal: journal ?? undefined }, hooks.problem);
    if (opts.listen.socket !== undefined) await clearStaleSocket(opts.listen.socket);
    server = net.createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      connections++;
      const c = new NbdConnection(socket, exp, (gone) => conns.delete(gone), opts.handshakeMs);
      conns.add(c);
    });
    await listen(server, opts.listen);
    const srv = server;
    const exports: ExportHost = {
      addSnapshotExport(name, snapshot) {
        exp.addSnapshotView(name, snapshot);
        return { name, uri: listeningInfo(srv, opts, exp, vol, name).uri };
      },
      removeExport: (name) => exp.removeView(name),
    };
    control = await ControlServer.start(vol, exp, (message) => hooks.problem?.(message), exports);
  } catch (err) {
    server?.close();
    journal?.close();
    vol.close();
    throw err;
  }
  const info = listeningInfo(server, opts, exp, vol);
  if (journal) info.journal = { dir: journal.dir, lastSeq: journal.lastSeq, overflowed: journal.resyncWaits, ...journal.recovery };
  exp.startTimer(opts.cpIntervalMs);
  hooks.listening?.(info);

  await new Promise<void>((resolve) => {
    if (hooks.signal.aborted) resolve();
    else hooks.signal.addEventListener('abort', () => resolve(), { once: true });
  });

  // shutdown: no more control requests (what they left behind, like a temporary
  // snapshot, is queued and runs before the last CP); no new connections, the open ones
  // send what they have and close
  control?.close();
  server.close();
  for (const c of conns) c.shutdown();
  const deadline = Date.now() + SHUTDOWN_GRACE_MS;
  while (conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  for (const c of conns) c.socket.destroy();
  if (opts.listen.socket !== undefined) removeSocketFile(opts.listen.socket);
  try {
    await exp.close(); // the requests still queued run, then the last CP
  } finally {
    try {
      journal?.close();
    } finally {
      vol.close();
    }
  }
  const journalInfo = journal ? { journal: { lastSeq: journal.lastSeq, overflowed: journal.resyncWaits, ...journal.recovery } } : {};
  return { volume: vol.path, connections, generation: vol.rootRecord.generation, ...exp.stats, ...journalInfo };
}

/** Unix socket paths longer than this (sun_path less its NUL) are cut short by the kernel. */
const SOCKET_PATH_MAX = 107;

/** A socket path that can be listened on as given: not empty, short enough, in an existing directory. */
function checkSocketPath(p: string): void {
  if (p === '') throw new InvalidInputError('the --socket path is empty', 'give a path, e.g. /run/vm.sock');
  const bytes = Buffer.byteLength(p);
  if (bytes > SOCKET_PATH_MAX) throw new InvalidInputError(`${p}: a Unix socket path is at most ${SOCKET_PATH_MAX} bytes (this one has ${bytes}): the kernel would cut it short`, 'choose a shorter path, e.g. in /run or /tmp');
  const dir = path.dirname(p);
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new NotFoundError(`${p}: no such directory ${dir}`, 'create the directory first, or choose a --socket path in an existing one');
    throw fromSystemError(err, dir, 'finding the socket\'s directory');
  }
  if (!st.isDirectory()) throw new InvalidInputError(`${p}: ${dir} is not a directory`, 'choose a --socket path in a directory');
}

function listen(server: net.Server, where: ListenAddress): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const at = where.socket ?? `${where.host}:${where.port}`;
      if (err.code === 'EADDRINUSE') reject(new BusyError(`${at}: address already in use`, where.socket ? 'is another server running? choose another --socket' : 'choose another --listen port'));
      else if (err.code === 'EACCES') reject(new IoError(`${at}: permission denied`, where.socket ? 'choose a --socket path you may write' : 'ports below 1024 need privileges'));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND') reject(new InvalidInputError(`${at}: no such local address`, 'use an address of this machine, e.g. 127.0.0.1 or 0.0.0.0'));
      else reject(new IoError(`${at}: ${err.message}`));
    };
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (where.socket !== undefined) server.listen(where.socket, done);
    else server.listen(where.port, where.host, done);
  });
}

function listeningInfo(server: net.Server, opts: ServeNbdOptions, exp: NbdExport, vol: Volume, name = exp.name): NbdListening {
  const base = { exportName: name, volume: vol.path, snapshot: exp.snapshot, readOnly: exp.readOnly, size: exp.size, blockSize: vol.blockSize };
  // the URI names the socket by its absolute path: it works from any directory (the server listens on the path as given, within the 107-byte limit)
  if (opts.listen.socket !== undefined) return { uri: nbdUri({ socket: path.resolve(opts.listen.socket) }, name), socket: opts.listen.socket, ...base };
  const a = server.address() as net.AddressInfo;
  return { uri: nbdUri({ host: a.address, port: a.port }, name), host: a.address, port: a.port, ...base };
}

/**
 * `--snapshot S` of a volume another imgstream process serves: that server adds a
 * read-only export of S beside its own (on its address, named --export-name or S) for as
 * long as this call runs. Returns null when no server answers for the volume (then the
 * caller opens it itself, and says "busy" if someone else holds it).
 */
async function serveSnapshotBeside(opts: ServeNbdOptions, hooks: NbdServeHooks): Promise<NbdServeResult | null> {
  const holder = VolumeLock.holder(opts.volume);
  if (!holder?.control || holder.pid === process.pid) return null;
  let served: ServedVolume;
  try {
    served = await ServedVolume.connect(opts.volume, holder);
  } catch {
    return null; // nothing answers: opening the volume here tells what holds it
  }
  try {
    if (opts.listenChosen) {
      throw new BusyError(
        `${opts.volume}: volume is being served by imgstream process ${served.servedBy}, which serves snapshots beside it on its own address`,
        'leave out --socket and --listen to serve the snapshot there, or stop that server first',
      );
    }
    if (opts.exportName === '') {
      throw new UsageError(
        `--export-name "" names the default export, which is the volume that imgstream process ${served.servedBy} serves; a snapshot export beside it needs a name of its own`,
        'leave out --export-name to name it after the snapshot, or give another name',
      );
    }
    const added = await served.request<{ name: string; uri: string; snapshot: string; size: number; blockSize: number }>('export.snapshot', { snapshot: opts.snapshot, name: opts.exportName ?? '' });
    hooks.listening?.({ uri: added.uri, exportName: added.name, volume: opts.volume, snapshot: added.snapshot, readOnly: true, size: added.size, blockSize: added.blockSize, servedBy: served.servedBy });
    const closed = new Promise<'closed'>((resolve) => served.onClose(() => resolve('closed')));
    const alive = setInterval(() => {}, 1 << 30); // the idle control connection does not keep the process up
    let ended: 'closed' | 'stopped';
    try {
      ended = await Promise.race([closed, new Promise<'stopped'>((resolve) => (hooks.signal.aborted ? resolve('stopped') : hooks.signal.addEventListener('abort', () => resolve('stopped'), { once: true })))]);
    } finally {
      clearInterval(alive);
    }
    // the export ended without being asked to: a supervisor must see it (exit 12), not a clean stop
    if (ended === 'closed' && !hooks.signal.aborted) {
      throw new NetworkError(`${opts.volume}: imgstream process ${served.servedBy}, which served the snapshot export beside the volume, went away: the export is gone`, 'start the server again, then this export');
    }
    return { volume: opts.volume, connections: 0, generation: 0, reads: 0, writes: 0, flushes: 0, trims: 0, writeZeroes: 0, blockStatus: 0, bytesRead: 0, bytesWritten: 0, errors: 0, consistencyPoints: 0, servedBy: served.servedBy };
  } finally {
    served.close();
  }
}

/** A socket file left by a server that died is removed; one that answers is in use. */
async function clearStaleSocket(path: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(path);
  } catch {
    return; // nothing there
  }
  if (!st.isSocket()) throw new ExistsError(`${path}: already exists and is not a socket`, 'choose another --socket path');
  const answers = await new Promise<boolean>((resolve) => {
    const probe = net.connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (answers) throw new BusyError(`${path}: another server is listening on this socket`, 'stop it, or choose another --socket path');
  removeSocketFile(path);
}

function removeSocketFile(path: string): void {
  try {
    fs.unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new IoError(`${path}: cannot remove the socket: ${(err as Error).message}`);
  }
}
