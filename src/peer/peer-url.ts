// How peers are named on the command line: peer://HOST:PORT/NAME for a stream or mirror
// on a peer, HOST:PORT for where a daemon listens, sha256:HEX for a pinned certificate,
// and the rules a NAME obeys (checked on both sides: the client fails fast, the daemon
// trusts nothing it is sent).
import { InvalidInputError } from '../core/errors.js';
import { escapeControls } from '../core/control-chars.js';

export interface PeerUrl {
  host: string;
  port: number;
  /** A relative path inside the daemon's directory; '' when the URL has none (only allowed when not required). */
  name: string;
}

const HOST = /^[A-Za-z0-9._-]+$/;
const IPV6 = /^[0-9A-Fa-f:.]+(%[A-Za-z0-9._-]+)?$/;
/** Room left in NAME_MAX (255) for the daemon's ".NAME.partial-PID" beside a file. */
export const MAX_NAME_COMPONENT_BYTES = 200;
export const MAX_NAME_BYTES = 255;

function parseHostPort(text: string, what: string, hint: string): { host: string; port: number } {
  const bad = (why: string) => new InvalidInputError(`invalid ${what} "${text}": ${why}`, hint);
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  if (!m) throw bad(text.includes(':') && !text.includes('[') && text.indexOf(':') !== text.lastIndexOf(':') ? 'an IPv6 address needs brackets' : 'expected HOST:PORT');
  const host = m[1] ?? m[2];
  if (host === '') throw bad('no host');
  if (m[1] !== undefined ? !IPV6.test(host) : !HOST.test(host)) throw bad(`"${host}" is not a host name or address`);
  const port = Number(m[3]);
  if (port > 65535) throw bad(`port ${port} is out of range`);
  return { host, port };
}

/** "peer://HOST:PORT/NAME" (IPv6 in brackets, NAME percent-encoded where needed). */
export function parsePeerUrl(url: string, opts: { requireName?: boolean } = {}): PeerUrl {
  const hint = 'write peer://HOST:PORT/NAME, e.g. peer://backup1:7420/vm1.l0 or peer://[::1]:7420/vm1.l0';
  if (!url.startsWith('peer://')) throw new InvalidInputError(`invalid peer URL "${escapeControls(url, SHOWN_CHARS)}": it must start with peer://`, hint);
  const rest = url.slice('peer://'.length);
  const slash = rest.indexOf('/');
  const authority = slash < 0 ? rest : rest.slice(0, slash);
  const { host, port } = parseHostPort(authority, 'peer URL', hint);
  if (port === 0) throw new InvalidInputError(`invalid peer URL "${escapeControls(url, SHOWN_CHARS)}": port 0`, hint);
  let name = '';
  if (slash >= 0) {
    try {
      name = decodeURIComponent(rest.slice(slash + 1));
    } catch {
      throw new InvalidInputError(`invalid peer URL "${escapeControls(url, SHOWN_CHARS)}": bad percent-encoding in the name`, hint);
    }
  }
  if (name === '' && opts.requireName !== false) throw new InvalidInputError(`peer URL "${escapeControls(url, SHOWN_CHARS)}" names no stream`, hint);
  if (name !== '') checkPeerName(name);
  return { host, port, name };
}

/** The canonical URL (what the catalog records): parsePeerUrl(formatPeerUrl(u)) equals u. */
/**
 * A command a hint prints for a peer URL runs only with the peer flags the user gave:
 * said after it ("" for a local path), without parentheses: a hint is printed inside some.
 */
export function peerFlagsNote(spec: string): string {
  return spec.startsWith('peer://') ? ', with the same --token-file and TLS flags' : '';
}

export function formatPeerUrl(u: PeerUrl): string {
  const host = u.host.includes(':') ? `[${u.host}]` : u.host;
  return `peer://${host}:${u.port}/${u.name.split('/').map(encodeURIComponent).join('/')}`;
}

/** HOST:PORT as peers print it: [v6]:port. */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Where a daemon listens: HOST:PORT or [IPv6]:PORT (port 0: any free port). */
export function parsePeerListen(text: string): { host: string; port: number } {
  return parseHostPort(text, 'listen address', 'use HOST:PORT, e.g. 0.0.0.0:7420, 127.0.0.1:7420 or [::]:7420');
}

/**
 * A NAME is a relative path inside the daemon's directory: one or more components
 * joined by "/", none empty, "." or "..", none starting with "." (names the daemon's
 * temporary files take) or "-" (names that read as options to other tools), no
 * control characters, at most 255 bytes in all and 200 per component.
 */
export function checkPeerName(name: string): void {
  const bad = (why: string) => new InvalidInputError(`invalid peer name "${escapeControls(name, SHOWN_CHARS)}": ${why}`, 'use a relative path such as vm1.l0 or site-a/vm1.l0');
  if (typeof name !== 'string' || name === '') throw bad('empty');
  if (name.includes('\0')) throw bad('it contains a NUL byte');
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(name)) throw bad('it contains a control character');
  if (name.startsWith('/')) throw bad('an absolute path');
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) throw bad(`longer than ${MAX_NAME_BYTES} bytes`);
  for (const c of name.split('/')) {
    if (c === '') throw bad('an empty path component ("//" or a trailing "/")');
    if (c === '..') throw bad('".." leads out of the directory');
    if (c === '.') throw bad('a "." component');
    if (c.startsWith('.')) throw bad('a component starts with "." (reserved for temporary files)');
    if (c.startsWith('-')) throw bad('a component starts with "-"');
    if (Buffer.byteLength(c, 'utf8') > MAX_NAME_COMPONENT_BYTES) throw bad(`a component is longer than ${MAX_NAME_COMPONENT_BYTES} bytes`);
  }
}

/** "sha256:HEX" (colons between bytes allowed, any case) -> 64 lower-case hex digits. */
export function parseFingerprint(text: string): string {
  const m = /^sha256:((?:[0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2})$/.exec(text.trim());
  if (!m) throw new InvalidInputError(`invalid certificate fingerprint "${escapeControls(text, SHOWN_CHARS)}"`, 'use sha256:HEX (64 hex digits), as `imgstream serve peer` prints it or `openssl x509 -noout -fingerprint -sha256 -in CERT` shows it');
  return m[1].replace(/:/g, '').toLowerCase();
}

/** "sha256:hex" of 64 hex digits, or of Node's "AB:CD:..." form. */
export function formatFingerprint(hexOrColons: string): string {
  return `sha256:${hexOrColons.replace(/:/g, '').toLowerCase()}`;
}

/** Characters of a name or text from a peer or a user shown in a one-line message (escapeControls), at most. */
export const SHOWN_CHARS = 120;
