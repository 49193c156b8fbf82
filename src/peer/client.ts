// connectPeer: a client's connection to `imgstream serve peer`, authenticated both ways.
// TLS unless plain mode is asked for; in TLS the daemon's certificate must check out
// against a CA file, a pinned SHA-256 fingerprint, or both, before a byte of ours is
// sent. The token file is read here and never leaves this process.
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { AuthError, ImgstreamError, NetworkError, NotFoundError, UsageError, fromSystemError } from '../core/errors.js';
import { PRE_AUTH_LIMITS } from '../format/peer-protocol.js';
import { FramedChannel, type PeerChannel } from './channel.js';
import { socketError } from './socket-error.js';
import { clientHandshake } from './handshake.js';
import { formatFingerprint, hostPort, parseFingerprint, parsePeerUrl, type PeerUrl } from './peer-url.js';
import { readTokenFile } from './token-file.js';

export interface PeerClientOptions {
  /** The shared token (the same contents as the daemon's --token-file; mode 600). */
  tokenFile: string;
  /** How the daemon's certificate is checked: a CA (PEM file), a pinned "sha256:HEX" fingerprint, or both. */
  tls?: { ca?: string; fingerprint?: string };
  /** Plain TCP, no TLS: only when the daemon runs with --plain too, on a network you trust. */
  plain?: boolean;
  /** Bytes per second this connection may send (token bucket); 0 or absent: unlimited. */
  limitRate?: number;
  /** Connecting, TLS and authentication together (default 30 s). */
  timeoutMs?: number;
  /** Longest silence once connected before the connection is given up (default 10 min). */
  idleTimeoutMs?: number;
}

export const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
export const DEFAULT_CLIENT_IDLE_MS = 10 * 60_000;

/** Certificate checks that failed: the daemon is not who it should be. */
const CERT_ERRORS = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** Checks the options without connecting (bad flags fail before anything else happens). */
export function checkPeerClientOptions(opts: PeerClientOptions, where: string): void {
  if (!opts.tokenFile) throw new UsageError(`${where} needs --token-file FILE`, 'the same token file the daemon was started with');
  const ca = opts.tls?.ca;
  const pin = opts.tls?.fingerprint;
  if (opts.plain && (ca || pin)) throw new UsageError('--plain cannot be combined with --tls-ca or --tls-fingerprint');
  if (!opts.plain && !ca && !pin) {
    throw new UsageError(`${where} uses TLS and needs --tls-ca FILE or --tls-fingerprint sha256:HEX to check the daemon's certificate`, 'or --plain, with a daemon started with --plain, on a network you trust');
  }
  if (pin) parseFingerprint(pin);
  if (opts.limitRate !== undefined && (!Number.isSafeInteger(opts.limitRate) || opts.limitRate < 0)) throw new UsageError(`invalid rate limit ${opts.limitRate}`);
}

/** Connects and authenticates; the channel is ready for the HELLO. */
export async function connectPeer(url: string | PeerUrl, opts: PeerClientOptions): Promise<PeerChannel> {
  return connectFramed(typeof url === 'string' ? parsePeerUrl(url, { requireName: false }) : url, opts);
}

async function connectFramed(u: PeerUrl, opts: PeerClientOptions): Promise<FramedChannel> {
  const peer = hostPort(u.host, u.port);
  checkPeerClientOptions(opts, `peer://${peer}`);
  const token = readTokenFile(opts.tokenFile);
  const pin = opts.tls?.fingerprint ? parseFingerprint(opts.tls.fingerprint) : null;
  let ca: Buffer | null = null;
  if (!opts.plain && opts.tls?.ca) {
    try {
      ca = fs.readFileSync(opts.tls.ca);
    } catch (err) {
      const e = fromSystemError(err, `--tls-ca ${opts.tls.ca}`, 'reading the CA certificate');
      throw e instanceof NotFoundError ? new NotFoundError(`--tls-ca ${opts.tls.ca}: no such file`) : e;
    }
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  let socket: net.Socket | null = null;
  let ch: FramedChannel | null = null;
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const err = new NetworkError(`peer ${peer}: no answer within ${timeoutMs / 1000} s`, 'is the daemon running and reachable? Is a firewall in the way?');
      socket?.destroy();
      ch?.destroy(err);
      reject(err);
    }, timeoutMs);
  });
  deadline.catch(() => {});
  try {
    socket = await Promise.race([opts.plain ? connectPlain(u, peer) : connectTls(u, peer, ca, pin, opts.tls?.ca ?? null), deadline]);
    ch = new FramedChannel(socket, { peer, expectPreamble: true, limits: PRE_AUTH_LIMITS, limitRate: opts.limitRate ?? 0 });
    await Promise.race([clientHandshake(ch, token), deadline]);
    ch.setIdleTimeout(opts.idleTimeoutMs ?? DEFAULT_CLIENT_IDLE_MS);
    return ch;
  } catch (err) {
    ch?.destroy(err as Error);
    socket?.destroy();
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

function connectPlain(u: PeerUrl, peer: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: u.host, port: u.port, noDelay: true });
    s.setKeepAlive(true, 60_000);
    s.once('connect', () => {
      s.off('error', onError);
      resolve(s);
    });
    const onError = (err: Error) => reject(socketError(err, peer));
    s.once('error', onError);
  });
}

function connectTls(u: PeerUrl, peer: string, ca: Buffer | null, pin: string | null, caFile: string | null): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({
      host: u.host,
      port: u.port,
      servername: net.isIP(u.host) ? undefined : u.host,
      minVersion: 'TLSv1.2',
      // with a CA, Node checks the chain and the name; with only a pin, the pin is the check
      ca: ca ? [ca] : undefined,
      rejectUnauthorized: ca !== null,
      checkServerIdentity: ca ? tls.checkServerIdentity : () => undefined,
    });
    s.setNoDelay(true);
    s.setKeepAlive(true, 60_000);
    const onError = (err: Error) => reject(tlsError(err, peer, caFile, u.host));
    s.once('error', onError);
    s.once('secureConnect', () => {
      s.off('error', onError);
      if (pin) {
        const cert = s.getPeerCertificate();
        const got = cert?.fingerprint256 ? formatFingerprint(cert.fingerprint256) : '(none)';
        if (got !== `sha256:${pin}`) {
          s.destroy();
          reject(new AuthError(`peer ${peer}: its TLS certificate is ${got}, not the pinned sha256:${pin}`, 'check --tls-fingerprint against the fingerprint `imgstream serve peer` printed when it started'));
          return;
        }
      }
      resolve(s);
    });
  });
}

function tlsError(err: Error, peer: string, caFile: string | null, host: string): ImgstreamError {
  const code = (err as NodeJS.ErrnoException).code ?? '';
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return new AuthError(`peer ${peer}: its TLS certificate is not for "${host}" (${(err as { reason?: string }).reason ?? err.message})`, 'connect with a name the certificate holds, or pin it with --tls-fingerprint');
  }
  if (CERT_ERRORS.has(code)) return new AuthError(`peer ${peer}: its TLS certificate does not check out against ${caFile ?? 'the CA'} (${code})`, 'give the CA that signed the daemon\'s certificate, or pin it with --tls-fingerprint');
  if (code === 'ECONNRESET' || /socket disconnected before secure TLS/.test(err.message)) {
    return new NetworkError(`peer ${peer}: the TLS handshake failed: the daemon closed the connection`, 'is the daemon running with --plain? Then connect with --plain too');
  }
  if (/wrong version number|packet length too long|unknown protocol/i.test(err.message)) {
    return new NetworkError(`peer ${peer}: the TLS handshake failed: the daemon does not speak TLS`, 'is the daemon running with --plain? Then connect with --plain too');
  }
  return socketError(err, peer);
}
