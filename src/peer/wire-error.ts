// Errors crossing a peer connection: the daemon sends its ImgstreamError as an error
// message (code, message, hint) and the client raises the same kind of error, so a
// refusal on the far side exits with the same code as it would locally.
import { EXIT_CODES, errorOfCode, ImgstreamError, NetworkError, type ErrorCode } from '../core/errors.js';
import type { PeerErrorBody } from '../format/peer-protocol.js';
import { parsePeerUrl, SHOWN_CHARS } from './peer-url.js';
import { escapeControls } from '../core/control-chars.js';

/**
 * A daemon's message about the NAME of `url` (peer://HOST:PORT/NAME) as a client says it,
 * naming it once, by the URL the user gave: "NAME: problem" (how the daemon names what it
 * holds) and "URL: problem" both become "URL: problem"; null for a message about
 * something else (the connection, the daemon).
 */
export function atPeerName(message: string, url: string): string | null {
  if (!url.startsWith('peer://')) return null;
  if (message.startsWith(`${url}: `)) return message;
  let name: string;
  try {
    name = parsePeerUrl(url).name;
  } catch {
    return null;
  }
  if (name === '') return null;
  for (const said of new Set([name, escapeControls(name, SHOWN_CHARS)])) if (message.startsWith(`${said}: `)) return `${url}: ${message.slice(said.length + 2)}`;
  return null;
}

/**
 * The error a peer sent, raised here (an unknown code is "io"): "URL: problem" when it is
 * about the NAME of `url` (see atPeerName), else "peer HOST:PORT: its message".
 */
export function errorFromWire(e: PeerErrorBody, peer: string, url?: string): ImgstreamError {
  const code = (Object.hasOwn(EXIT_CODES, e.code) ? e.code : 'io') as ErrorCode;
  const message = escapeControls(e.message, 4000);
  // a message that already names a place on this peer by its URL (peer://HOST:PORT/...) is not prefixed again
  const named = (url === undefined ? null : atPeerName(message, url)) ?? (message.startsWith(`peer://${peer}/`) ? message : `peer ${peer}: ${message}`);
  return errorOfCode(code, named, e.hint === undefined ? undefined : escapeControls(e.hint, 1000)) as ImgstreamError;
}

/** What the other side is told about a failure: an ImgstreamError as it is, anything else as an internal error. */
export function errorToWire(err: unknown): PeerErrorBody {
  if (err instanceof ImgstreamError) return { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
  return { code: 'io', message: 'internal error in the daemon', hint: 'see the daemon\'s log' };
}

/**
 * What a daemon that is shutting down tells each client with a connection open, as its
 * services end their transfers: a network error, so clients exit 12 and those that
 * retry (protect, mirror start) retry.
 */
export function daemonShuttingDown(): NetworkError {
  return new NetworkError('the daemon is shutting down', 'run it again once the daemon is back');
}
