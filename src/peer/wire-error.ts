// Errors crossing a peer connection: the daemon sends its ImgstreamError as an error
// message (code, message, hint) and the client raises the same kind of error, so a
// refusal on the far side exits with the same code as it would locally.
import { EXIT_CODES, errorOfCode, ImgstreamError, NetworkError, type ErrorCode } from '../core/errors.js';
import type { PeerErrorBody } from '../format/peer-protocol.js';
import { printable } from './peer-url.js';

/** The error a peer sent, raised here: "peer HOST:PORT: its message" (an unknown code is "io"). */
export function errorFromWire(e: PeerErrorBody, peer: string): ImgstreamError {
  const code = (Object.hasOwn(EXIT_CODES, e.code) ? e.code : 'io') as ErrorCode;
  return errorOfCode(code, `peer ${peer}: ${printable(e.message, 4000)}`, e.hint === undefined ? undefined : printable(e.hint, 1000)) as ImgstreamError;
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
