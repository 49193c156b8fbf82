// The start of every peer connection (see ../format/peer-protocol.ts): preambles both
// ways, then mutual authentication by HMAC-SHA256 with the shared token over both
// nonces (and the TLS channel binding). The client proves itself first; the daemon
// answers with its own proof only then. MACs are compared in constant time.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { AuthError, CorruptError, InvalidInputError, NetworkError } from '../core/errors.js';
import {
  FULL_LIMITS,
  MAC_HEX_LENGTH,
  PEER_MAX_VERSION,
  PEER_MIN_VERSION,
  PEER_NONCE_BYTES,
  PeerFormatError,
  authInput,
  commonVersion,
  decodePeerPreamble,
  encodePeerPreamble,
  errorOf,
  looksLikeTls,
  type PeerErrorBody,
  type PeerRole,
} from '../format/peer-protocol.js';
import type { FramedChannel } from './channel.js';
import { errorFromWire } from './wire-error.js';

function mac(token: Buffer, role: PeerRole, clientPreamble: Buffer, serverPreamble: Buffer, binding: Buffer | null): Buffer {
  return createHmac('sha256', token).update(authInput(role, clientPreamble, serverPreamble, binding)).digest();
}

/** A MAC as sent (64 hex digits) equals the expected one; constant time in its value. */
function macMatches(sent: unknown, expected: Buffer): boolean {
  if (typeof sent !== 'string' || sent.length !== MAC_HEX_LENGTH || !/^[0-9a-f]+$/i.test(sent)) return false;
  return timingSafeEqual(Buffer.from(sent, 'hex'), expected);
}

const versions = `${PEER_MIN_VERSION}..${PEER_MAX_VERSION}`;

/** The client's side: resolves with the protocol version once both sides are authenticated. */
export async function clientHandshake(ch: FramedChannel, token: Buffer): Promise<number> {
  const mine = encodePeerPreamble(randomBytes(PEER_NONCE_BYTES));
  await ch.sendRaw(mine);
  let theirs: Buffer;
  try {
    theirs = await ch.receivePreamble();
  } catch (err) {
    const first = ch.firstBytes();
    if (first.length >= 2 && (first[0] === 0x15 || first[0] === 0x16) && first[1] === 0x03) {
      throw new NetworkError(`peer ${ch.peer}: the daemon speaks TLS`, 'drop --plain and give --tls-ca FILE or --tls-fingerprint sha256:HEX');
    }
    if (err instanceof NetworkError) throw new NetworkError(`peer ${ch.peer}: the connection closed during the handshake`, 'does the daemon use TLS (then leave out --plain)? Is it full? See its log');
    throw err;
  }
  let pre: ReturnType<typeof decodePeerPreamble>;
  try {
    pre = decodePeerPreamble(theirs);
  } catch (err) {
    if (!(err instanceof PeerFormatError)) throw err;
    throw new CorruptError(`peer ${ch.peer}: not an imgstream peer daemon (${err.message})`, 'check the address and port');
  }
  const version = commonVersion(pre);
  if (version === null) {
    throw new InvalidInputError(`peer ${ch.peer}: the daemon speaks peer protocol versions ${pre.minVersion}..${pre.maxVersion}, this imgstream ${versions}`, 'use the same imgstream release on both sides');
  }
  const binding = ch.tlsBinding();
  // a daemon that refuses (busy, wrong version) may close before our proof arrives: its
  // error message, when it came, says more than the failed send
  const sendFailure = await ch.send({ type: 'auth', mac: mac(token, 'client', mine, theirs, binding).toString('hex') }).then(
    () => null,
    (err: unknown) => err,
  );
  let reply: Awaited<ReturnType<FramedChannel['receive']>>;
  try {
    reply = await ch.receive();
  } catch (err) {
    throw sendFailure ?? err;
  }
  if (reply === null) throw new NetworkError(`peer ${ch.peer}: the daemon closed the connection during authentication`, 'see its log');
  const e = errorOf(reply.msg);
  if (e) throw errorFromWire(e, ch.peer);
  if (reply.msg.type !== 'auth' || !macMatches(reply.msg.mac, mac(token, 'server', mine, theirs, binding))) {
    throw new AuthError(`peer ${ch.peer}: the daemon could not prove it holds the same token`, 'both sides must use token files with the same contents; or something is impersonating the daemon');
  }
  ch.setLimits(FULL_LIMITS);
  return version;
}

/** Why the daemon ended a handshake: logged; `reply` (when there is one) is sent to the client. */
export class HandshakeRefused extends Error {
  constructor(readonly reason: string, readonly reply: PeerErrorBody | null) {
    super(reason);
    this.name = 'HandshakeRefused';
  }
}

/**
 * The daemon's side, after it sent `mine` (its preamble). Resolves once the client
 * proved it holds the token; throws HandshakeRefused otherwise. `admit` runs once the
 * client's proof checked out, before the daemon's own is sent: it may refuse (busy).
 */
export async function serverHandshake(ch: FramedChannel, token: Buffer, mine: Buffer, admit: () => void = () => {}): Promise<number> {
  let theirs: Buffer;
  try {
    theirs = await ch.receivePreamble();
  } catch (err) {
    const first = ch.firstBytes();
    if (looksLikeTls(first)) throw new HandshakeRefused('a TLS client on a plain daemon (start the daemon with --tls-cert and --tls-key, or connect with --plain)', null);
    throw new HandshakeRefused(`no preamble: ${(err as Error).message.replace(/^peer \S+: /, '')}`, null);
  }
  let pre: ReturnType<typeof decodePeerPreamble>;
  try {
    pre = decodePeerPreamble(theirs);
  } catch (err) {
    if (!(err instanceof PeerFormatError)) throw err;
    throw new HandshakeRefused(looksLikeTls(theirs) ? 'a TLS client on a plain daemon (start the daemon with --tls-cert and --tls-key, or connect with --plain)' : `not an imgstream peer client (${err.message})`, null);
  }
  const version = commonVersion(pre);
  if (version === null) {
    const message = `this daemon speaks peer protocol versions ${versions}, the client ${pre.minVersion}..${pre.maxVersion}`;
    throw new HandshakeRefused(`refused: ${message}`, { code: 'invalid-input', message, hint: 'use the same imgstream release on both sides' });
  }
  const auth = await ch.receive();
  if (auth === null) throw new HandshakeRefused('left before authenticating', null);
  const failed = (why: string) => new HandshakeRefused(`auth failed: ${why}`, { code: 'auth', message: 'authentication failed: the token does not match', hint: 'both sides must use token files with the same contents' });
  if (auth.msg.type !== 'auth') throw new HandshakeRefused('auth failed: no authentication before its request', { code: 'auth', message: 'authenticate first', hint: 'this is not how an imgstream client talks' });
  const binding = ch.tlsBinding();
  if (!macMatches(auth.msg.mac, mac(token, 'client', theirs, mine, binding))) throw failed(typeof auth.msg.mac === 'string' && auth.msg.mac.length === MAC_HEX_LENGTH ? 'wrong token' : 'malformed proof');
  admit(); // may refuse (busy) now that the client is known
  await ch.send({ type: 'auth', mac: mac(token, 'server', theirs, mine, binding).toString('hex') });
  ch.setLimits(FULL_LIMITS);
  return version;
}

/** The daemon's preamble for a new connection. */
export function serverPreamble(): Buffer {
  return encodePeerPreamble(randomBytes(PEER_NONCE_BYTES));
}
