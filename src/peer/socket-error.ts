// Socket errors as the one-line errors users see (a NetworkError naming the peer), and a
// socket's remote address as messages and logs write it.
import type net from 'node:net';
import { ImgstreamError, NetworkError } from '../core/errors.js';

/** A socket error as a one-line NetworkError naming the peer. */
export function socketError(err: Error, peer: string): ImgstreamError {
  if (err instanceof ImgstreamError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ECONNREFUSED':
      return new NetworkError(`peer ${peer}: connection refused`, 'is `imgstream serve peer` running there, on this port?');
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new NetworkError(`peer ${peer}: unknown host`, 'check the host name');
    case 'ECONNRESET':
      return new NetworkError(`peer ${peer}: connection reset`, 'the other side went away or refused the connection; see its log');
    case 'EPIPE':
    case 'ERR_STREAM_DESTROYED':
    case 'ERR_STREAM_WRITE_AFTER_END':
      return new NetworkError(`peer ${peer}: the connection is closed`, 'the other side went away; see its log');
    case 'ETIMEDOUT':
      return new NetworkError(`peer ${peer}: connection timed out`, 'check the address and the network');
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new NetworkError(`peer ${peer}: no route to the host`, 'check the address and the network');
    default:
      return new NetworkError(`peer ${peer}: ${err.message.split('\n')[0]}`);
  }
}

/** "ADDRESS:PORT" of a socket's other end. */
export function remoteAddress(s: net.Socket): string {
  const a = s.remoteAddress ?? '?';
  return a.includes(':') ? `[${a}]:${s.remotePort}` : `${a}:${s.remotePort}`;
}
