// servePeer: the daemon behind `imgstream serve peer`. Listens on TCP (TLS unless plain
// mode is asked for), authenticates each client (./handshake.ts), reads its HELLO,
// checks the name it works on stays inside the directory, and hands the connection to
// the service registered for its operation (./services.ts). A client that misbehaves
// costs only its own connection: handshakes and silences are timed out, connections
// are capped, and every connection runs in its own try/catch. Everything that happens
// is logged, one line each: time, connection number and address, what.
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { BusyError, ImgstreamError, InvalidInputError, IoError, NotFoundError, UsageError, fromSystemError } from '../core/errors.js';
import { PRE_AUTH_LIMITS, errorOf } from '../format/peer-protocol.js';
import { FramedChannel } from './channel.js';
import { remoteAddress } from './socket-error.js';
import { resolveContained } from './contained-path.js';
import { clientErrorBody } from './daemon-paths.js';
import { HandshakeRefused, serverHandshake, serverPreamble } from './handshake.js';
import { formatFingerprint, hostPort, SHOWN_CHARS } from './peer-url.js';
import { isPeerOp, peerServices, type PeerContext, type PeerHello, type PeerService } from './services.js';
import { readTokenFile } from './token-file.js';
import { daemonShuttingDown, errorToWire } from './wire-error.js';
import { escapeControls } from '../core/control-chars.js';

export interface ServePeerOptions {
  /** The directory every NAME is inside. */
  root: string;
  /** Where to listen (port 0: any free port). */
  listen: { host: string; port: number };
  /** The shared token (mode 600). */
  tokenFile: string;
  /** PEM files of the daemon's certificate (chain) and key: TLS. */
  tls?: { cert: string; key: string };
  /** Plain TCP instead of TLS (a trusted network only). */
  plain?: boolean;
  /** Receives each log line (time and client included). */
  log: (line: string) => void;
  /** Stops the daemon (SIGINT, SIGTERM in the CLI). */
  signal: AbortSignal;
  /** Called once the daemon listens. */
  listening: (info: PeerListening) => void;
  /** The services offered (default: every registered one, see registerPeerService). */
  services?: ReadonlyMap<string, PeerService>;
  /** Authenticated connections served at once; more are told "busy" (default 32). */
  maxConnections?: number;
  /**
   * Connections still in TLS or authentication, counted apart from maxConnections
   * (default 16): one more drops the oldest of them, so silent connections never keep an
   * authenticated client out.
   */
  maxHandshakes?: number;
  /** Time for TLS and authentication (default 5 s). */
  handshakeTimeoutMs?: number;
  /** Longest silence of an authenticated connection (default 5 min). */
  idleTimeoutMs?: number;
  /** Longest time a message may take to arrive once its first byte did (default 2 min; 0: no limit). */
  frameTimeoutMs?: number;
}

export interface PeerListening {
  /** peer://HOST:PORT/ as clients write it (NAME appended). */
  url: string;
  host: string;
  port: number;
  root: string;
  tls: boolean;
  /** The certificate's "sha256:HEX", for clients to pin with --tls-fingerprint; null in plain mode. */
  fingerprint: string | null;
  services: string[];
}

export interface PeerServeResult {
  connections: number;
  /** Connections refused before a service ran (handshake, authentication, hello). */
  refused: number;
  bytesReceived: number;
  bytesSent: number;
}

export const DEFAULT_MAX_CONNECTIONS = 32;
export const DEFAULT_MAX_HANDSHAKES = 16;
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
export const DEFAULT_SERVER_IDLE_MS = 5 * 60_000;
/** A 1 MiB message (a mirror's DATA record) must arrive at 9 KB/s at least. */
export const DEFAULT_FRAME_TIMEOUT_MS = 2 * 60_000;
/**
 * At shutdown every conversation is interrupted and its service ends its transfer at its
 * next step (milliseconds); this is only the backstop for one that does not, after which
 * its connection is cut.
 */
const SHUTDOWN_GRACE_MS = 3000;
/** How long a connection's close waits at shutdown for the client to close its side. */
const SHUTDOWN_CLOSE_MS = 500;

export async function servePeer(opts: ServePeerOptions): Promise<PeerServeResult> {
  if (opts.plain && opts.tls) throw new UsageError('--plain cannot be combined with --tls-cert and --tls-key');
  if (!opts.plain && !opts.tls) throw new UsageError('a peer daemon needs --tls-cert FILE and --tls-key FILE, or --plain', 'TLS protects the streams and proves the daemon to clients; --plain only on a network you trust');
  const root = realDirectory(opts.root);
  /** The directory as given and as its real path: both are hidden from clients' errors. */
  const roots = [opts.root, root];
  const token = readTokenFile(opts.tokenFile);
  const tlsSetup = opts.tls ? secureContext(opts.tls) : null;
  const services = opts.services ?? peerServices();
  const maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  if (!Number.isSafeInteger(maxConnections) || maxConnections < 1) throw new UsageError(`invalid connection limit ${maxConnections}`);
  const maxHandshakes = opts.maxHandshakes ?? DEFAULT_MAX_HANDSHAKES;
  if (!Number.isSafeInteger(maxHandshakes) || maxHandshakes < 1) throw new UsageError(`invalid handshake limit ${maxHandshakes}`);
  const handshakeMs = opts.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const idleMs = opts.idleTimeoutMs ?? DEFAULT_SERVER_IDLE_MS;
  const frameMs = opts.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS;

  const stats: PeerServeResult = { connections: 0, refused: 0, bytesReceived: 0, bytesSent: 0 };
  const sockets = new Set<net.Socket>();
  /** The TLS socket over a connection's TCP socket. */
  const tops = new Map<net.Socket, net.Socket>();
  /** The channel over a connection's TCP socket, once it has one. */
  const channels = new Map<net.Socket, FramedChannel>();
  const running = new Set<Promise<void>>();
  const shutdown = new AbortController();
  /** Connections in TLS or authentication, oldest first: each one's way to drop it. */
  const handshaking = new Map<number, () => void>();
  /** Authenticated connections holding one of the maxConnections places. */
  let admitted = 0;
  let seq = 0;

  // half-open: a client that ends its side after its last message still gets the answer
  const server = net.createServer({ noDelay: true, allowHalfOpen: true }, (raw) => {
    const id = ++seq;
    stats.connections++;
    sockets.add(raw);
    raw.once('close', () => {
      sockets.delete(raw);
      tops.delete(raw);
      channels.delete(raw);
    });
    raw.on('error', () => {}); // reported through the channel, or the connection is simply gone
    // a newcomer makes room by dropping the connection that has waited longest without
    // authenticating: a real client authenticates in milliseconds, a silent one is cycled out
    if (handshaking.size >= maxHandshakes) {
      const [oldest, drop] = handshaking.entries().next().value as [number, () => void];
      handshaking.delete(oldest);
      drop();
    }
    const p = serveConnection(raw, id).catch((err) => {
      // a bug in this file: log it, keep serving the others
      opts.log(`${stamp()} [${id}] internal error: ${oneLine(err)}`);
      raw.destroy();
    });
    running.add(p);
    void p.finally(() => running.delete(p));
  });
  await listen(server, opts.listen);
  const a = server.address() as net.AddressInfo;
  const info: PeerListening = {
    url: `peer://${hostPort(a.address, a.port)}/`,
    host: a.address,
    port: a.port,
    root,
    tls: tlsSetup !== null,
    fingerprint: tlsSetup?.fingerprint ?? null,
    services: [...services.keys()].sort(),
  };
  opts.log(`${stamp()} listening on ${hostPort(a.address, a.port)} (${tlsSetup ? `TLS, certificate ${tlsSetup.fingerprint}` : 'plain TCP, no TLS'}), directory ${root}`);
  opts.listening(info);

  await new Promise<void>((resolve) => {
    if (opts.signal.aborted) resolve();
    else opts.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  opts.log(`${stamp()} shutting down: ${sockets.size} connection(s) open`);
  server.close();
  shutdown.abort();
  // every conversation stops where it is: each service ends its transfer as it does when its
  // client goes away (nothing left under the name), and the client is told why
  const stopping = daemonShuttingDown();
  for (const s of sockets) {
    const ch = channels.get(s);
    if (ch) ch.interrupt(stopping);
    else cutSocket(s); // still in TLS: there is no one to tell yet
  }
  const deadline = Date.now() + SHUTDOWN_GRACE_MS;
  while (running.size > 0 && Date.now() < deadline) await sleep(20);
  if (running.size > 0) {
    // a service that does not end: its client is told (when the connection is free for it), then it is cut
    const told = [...channels.values()].filter((ch) => !ch.errorSent).map((ch) => ch.send({ error: errorToWire(stopping) }).catch(() => {}));
    await Promise.race([Promise.allSettled(told), sleep(200)]);
    for (const s of sockets) cutSocket(s);
    // without its connection it ends at its next step; one stuck elsewhere is not waited for
    await Promise.race([Promise.allSettled([...running]), sleep(1000)]);
    if (running.size > 0) opts.log(`${stamp()} ${running.size} service(s) did not end: stopped without them`);
  }
  opts.log(`${stamp()} stopped: ${stats.connections} connection(s), ${stats.bytesReceived} bytes in, ${stats.bytesSent} bytes out`);
  return stats;

  function cutSocket(s: net.Socket): void {
    tops.get(s)?.destroy();
    s.destroy();
  }

  async function serveConnection(raw: net.Socket, id: number): Promise<void> {
    const peer = remoteAddress(raw);
    const started = Date.now();
    const log = (what: string) => opts.log(`${stamp()} [${id}] ${peer}: ${what}`);
    log(`connect${tlsSetup ? ' (TLS)' : ''}`);
    raw.setKeepAlive(true, 60_000);
    let phase = 'handshake';
    let socket: net.Socket = raw;
    let timedOut = false;
    const cut = (why: string) => {
      timedOut = true;
      log(why);
      socket.destroy();
      raw.destroy();
    };
    const timer = setTimeout(() => {
      handshaking.delete(id);
      cut(`${phase} timed out after ${handshakeMs / 1000} s`);
    }, handshakeMs);
    handshaking.set(id, () => {
      clearTimeout(timer);
      cut(`${phase} not finished: dropped for a newer connection (more than ${maxHandshakes} waiting to authenticate)`);
    });
    let holdsPlace = false;
    let ch: FramedChannel | null = null;
    let authenticated = false;
    let op: string | null = null;
    try {
      if (tlsSetup) {
        phase = 'TLS handshake';
        const t = new tls.TLSSocket(raw, { isServer: true, secureContext: tlsSetup.context, allowHalfOpen: true } as tls.TLSSocketOptions);
        t.on('error', () => {});
        tops.set(raw, t);
        socket = t;
        await new Promise<void>((resolve, reject) => {
          t.once('secure', () => resolve());
          t.once('error', (err) => reject(new HandshakeRefused(`TLS handshake failed: ${oneLine(err)}`, null)));
          t.once('close', () => reject(new HandshakeRefused('closed during the TLS handshake', null)));
          // half-open connections keep the socket after the client's end: notice it here
          t.once('end', () => reject(new HandshakeRefused('closed during the TLS handshake', null)));
        });
      }
      phase = 'handshake';
      ch = new FramedChannel(socket, { peer, expectPreamble: true, limits: PRE_AUTH_LIMITS, outgoingError: (e) => clientErrorBody(e, roots) });
      channels.set(raw, ch);
      const mine = serverPreamble();
      await ch.sendRaw(mine);
      if (shutdown.signal.aborted) throw stoppingNow();
      // the place among maxConnections is taken only by a client that proved itself: the
      // busy answer then goes where the daemon's proof would, as an error the client raises
      await serverHandshake(ch, token, mine, () => {
        if (shutdown.signal.aborted) throw stoppingNow();
        if (admitted >= maxConnections) throw busy(`too many connections (${maxConnections})`);
        admitted++;
        holdsPlace = true;
      });
      authenticated = true;
      clearTimeout(timer);
      handshaking.delete(id);
      ch.setIdleTimeout(idleMs);
      ch.setFrameTimeout(frameMs);
      log('auth ok');

      const first = await ch.receive();
      if (first === null) {
        log('left without a request');
        return;
      }
      const hello = checkHello(first.msg, first.payload);
      op = hello.op;
      const service = services.get(hello.op);
      if (!service) {
        throw new InvalidInputError(`unknown operation "${escapeControls(hello.op, 64)}"`, `this daemon offers ${[...services.keys()].sort().join(', ') || 'nothing'}`);
      }
      const target = hello.name === undefined ? root : resolveContained(root, hello.name);
      log(`${hello.op}${hello.name === undefined ? '' : ` ${escapeControls(hello.name, SHOWN_CHARS)}`}`);
      const ctx: PeerContext = { root, path: target, peer, log, signal: shutdown.signal };
      await service(ch, hello, ctx);
      log(`${hello.op} ok`);
    } catch (err) {
      if (timedOut) stats.refused++; // said when it happened
      else if (ch?.interruption && err === ch.interruption && !op) log(`closed: ${oneLine(err)}`); // told below
      else if (err instanceof HandshakeRefused) {
        stats.refused++;
        log(err.reason);
        if (err.reply && ch) await ch.send({ error: err.reply }).catch(() => {});
      } else if (err instanceof ImgstreamError) {
        if (!op) stats.refused++;
        log(`${op ? `${op} failed` : authenticated ? 'refused' : 'failed'}: ${err.code}: ${oneLine(err)}`);
        // a service may have told the client already (the mirror services do)
        if (ch && !ch.errorSent) await ch.send({ error: errorToWire(err) }).catch(() => {});
      } else {
        log(`${op ? `${op} failed` : 'failed'}: internal error: ${oneLine(err)}`);
        if (ch && !ch.errorSent) await ch.send({ error: errorToWire(err) }).catch(() => {});
      }
    } finally {
      clearTimeout(timer);
      handshaking.delete(id);
      if (holdsPlace) admitted--;
      if (ch) {
        // a client interrupted in its handshake, or between requests, is told too
        if (ch.interruption && !ch.errorSent) await ch.send({ error: errorToWire(ch.interruption) }).catch(() => {});
        await ch.close(shutdown.signal.aborted ? SHUTDOWN_CLOSE_MS : undefined);
        stats.bytesReceived += ch.bytesReceived;
        stats.bytesSent += ch.bytesSent;
      } else raw.destroy();
      log(`disconnect: ${ch?.bytesReceived ?? 0} bytes in, ${ch?.bytesSent ?? 0} bytes out, ${((Date.now() - started) / 1000).toFixed(1)} s`);
    }
  }
}

/** A connection that arrives as the daemon stops: told so, as the open ones are (a network error: clients that retry, retry). */
function stoppingNow(): HandshakeRefused {
  return new HandshakeRefused('refused: the daemon is shutting down', errorToWire(daemonShuttingDown()));
}

function busy(why: string): HandshakeRefused {
  return new HandshakeRefused(`refused: ${why}`, { code: 'busy', message: `the daemon is busy: ${why}`, hint: 'try again later' });
}

/** The HELLO, checked: an operation name, an optional string name, no payload. */
function checkHello(msg: Record<string, unknown>, payload: Buffer | null): PeerHello {
  if (errorOf(msg)) throw new InvalidInputError('the client sent an error instead of a request');
  if (!isPeerOp(msg.op)) throw new InvalidInputError(typeof msg.op === 'string' ? `malformed operation name "${escapeControls(msg.op, 64)}"` : 'the request names no operation', 'this is not how an imgstream client talks');
  if (msg.name !== undefined && typeof msg.name !== 'string') throw new InvalidInputError('the name in the request is not a string');
  if (payload !== null) throw new InvalidInputError('a request carries no payload');
  return msg as PeerHello;
}

function realDirectory(dir: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    const e = fromSystemError(err, dir, 'opening the directory');
    throw e instanceof NotFoundError ? new NotFoundError(`--root ${dir}: no such directory`, 'create it first (mkdir), owned by the user the daemon runs as') : e;
  }
  if (!st.isDirectory()) throw new InvalidInputError(`--root ${dir}: not a directory`);
  return fs.realpathSync(dir);
}

function secureContext(files: { cert: string; key: string }): { context: tls.SecureContext; fingerprint: string } {
  const read = (file: string, what: string) => {
    try {
      return fs.readFileSync(file);
    } catch (err) {
      const e = fromSystemError(err, `${what} ${file}`, 'reading it');
      throw e instanceof NotFoundError ? new NotFoundError(`${what} ${file}: no such file`) : e;
    }
  };
  const cert = read(files.cert, '--tls-cert');
  const key = read(files.key, '--tls-key');
  let fingerprint: string;
  try {
    fingerprint = formatFingerprint(new X509Certificate(cert).fingerprint256);
  } catch {
    throw new InvalidInputError(`--tls-cert ${files.cert}: not a PEM certificate`, 'give the certificate file (BEGIN CERTIFICATE)');
  }
  try {
    return { context: tls.createSecureContext({ cert, key, minVersion: 'TLSv1.2' }), fingerprint };
  } catch (err) {
    throw new InvalidInputError(`--tls-key ${files.key}: ${oneLine(err)}`, 'give the private key that belongs to --tls-cert (PEM, unencrypted)');
  }
}

function listen(server: net.Server, at: { host: string; port: number }): Promise<void> {
  return new Promise((resolve, reject) => {
    const where = hostPort(at.host, at.port);
    const onError = (err: NodeJS.ErrnoException) => {
      if (err.code === 'EADDRINUSE') reject(new BusyError(`${where}: address already in use`, 'is another daemon running? choose another --listen port'));
      else if (err.code === 'EACCES') reject(new IoError(`${where}: permission denied`, 'ports below 1024 need privileges'));
      else if (err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') reject(new InvalidInputError(`${where}: no such local address`, 'use an address of this machine, e.g. 0.0.0.0 or 127.0.0.1'));
      else reject(new IoError(`${where}: ${err.message}`));
    };
    server.once('error', onError);
    server.listen(at.port, at.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function stamp(): string {
  return new Date().toISOString();
}

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return escapeControls(text.split('\n')[0], 300);
}
