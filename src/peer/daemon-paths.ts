// What a daemon's error may say about where things are: a client knows names relative
// to the daemon's directory (peer://HOST:PORT/NAME) and nothing else. Errors raised deep
// in the volume or mirror code name absolute paths (/srv/imgstream/vm/.m.vol.mirror-new:
// no space left on device); before such a message leaves the daemon, paths inside its
// directory become the names clients use (a hidden temporary file of NAME becomes NAME)
// and any other absolute path becomes "(a path on the daemon)".
import path from 'node:path';
import type { PeerErrorBody } from '../format/peer-protocol.js';
import { escapeRegExp } from '../core/regexp.js';

/** A temporary file beside NAME: ".NAME.partial-PID", ".NAME.mirror-new", ".NAME.restoring-PID", ... */
const TEMP_OF = /^\.(.+)\.(?:partial|mirror|restoring|imgstream)-[\w.-]*$/;

/** Characters that end a path inside a message. */
const PATH_CHARS = String.raw`[^\s:'"(),;]`;

/** The name a client uses for `rel` (relative to the directory): a temporary file's owner for a temporary file. */
function clientName(rel: string): string {
  if (rel === '') return '.';
  const parts = rel.split(path.sep);
  const last = parts[parts.length - 1];
  const owner = TEMP_OF.exec(last);
  if (owner) parts[parts.length - 1] = owner[1];
  return parts.join('/');
}

/**
 * `text` with every absolute path replaced: below one of `roots` (the daemon's directory
 * as given and as its real path) by the client's name for it, anywhere else by
 * "(a path on the daemon)".
 */
export function hideDaemonPaths(text: string, roots: readonly string[]): string {
  let out = text;
  // the longest root first: /srv/img before /srv when both are given
  for (const root of [...new Set(roots.map((r) => path.resolve(r)))].sort((a, b) => b.length - a.length)) {
    if (root === '/') continue;
    const re = new RegExp(`${escapeRegExp(root)}(?:/(${PATH_CHARS}*))?(?!${PATH_CHARS})`, 'g');
    out = out.replace(re, (_m, rel: string | undefined) => (rel ? clientName(rel.replace(/\/+$/, '')) : "the daemon's directory"));
  }
  // a path elsewhere: a slash at the start of a word (not "a/b", "1/2" or "peer://")
  return out.replace(new RegExp(`(?<![\\w.:/])/${PATH_CHARS}+`, 'g'), '(a path on the daemon)');
}

/** An error body as a client may see it: message and hint without the daemon's paths. */
export function clientErrorBody(e: PeerErrorBody, roots: readonly string[]): PeerErrorBody {
  return {
    ...e,
    message: typeof e.message === 'string' ? hideDaemonPaths(e.message, roots) : e.message,
    ...(typeof e.hint === 'string' ? { hint: hideDaemonPaths(e.hint, roots) } : {}),
  };
}
