// Where a server listens, as the command line spells it (HOST:PORT, [IPv6]:PORT, or a
// Unix socket path), and the NBD URI a client connects to (the syntax of
// https://github.com/NetworkBlockDevice/nbd/blob/master/doc/uri.md, which qemu and
// libnbd read).
import { InvalidInputError } from '../core/errors.js';

/** The IANA port of NBD. */
export const NBD_PORT = 10809;

export type ListenAddress = { host: string; port: number; socket?: undefined } | { socket: string; host?: undefined; port?: undefined };

/** "HOST:PORT", "[IPv6]:PORT", ":PORT" (localhost) or "HOST" (port 10809). Port 0 picks a free port. */
export function parseListenAddress(text: string): ListenAddress {
  const bad = () => new InvalidInputError(`invalid listen address "${text}"`, 'use HOST:PORT, e.g. 127.0.0.1:10809, [::1]:10809 or 0.0.0.0:10809');
  if (text.trim() === '') throw bad();
  let host: string;
  let portText: string | undefined;
  const v6 = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (v6) {
    host = v6[1];
    portText = v6[2];
  } else {
    const i = text.lastIndexOf(':');
    if (i >= 0 && text.indexOf(':') !== i) throw bad(); // a bare IPv6 address needs brackets
    host = i >= 0 ? text.slice(0, i) : text;
    portText = i >= 0 ? text.slice(i + 1) : undefined;
  }
  if (host === '') host = '127.0.0.1';
  if (!/^[A-Za-z0-9.:%_-]+$/.test(host)) throw bad();
  if (portText !== undefined && !/^\d{1,5}$/.test(portText)) throw bad();
  const port = portText === undefined ? NBD_PORT : Number(portText);
  if (port > 65535) throw bad();
  return { host, port };
}

/** The NBD URI of an export: nbd://HOST:PORT/NAME or nbd+unix:///NAME?socket=PATH. */
export function nbdUri(at: { host: string; port: number } | { socket: string }, exportName: string): string {
  const name = encodeURIComponent(exportName);
  if ('socket' in at) return `nbd+unix:///${name}?socket=${encodeURI(at.socket)}`;
  const host = at.host.includes(':') ? `[${at.host}]` : at.host;
  return `nbd://${host}:${at.port}${name ? `/${name}` : ''}`;
}
