// Control characters in text bound for a terminal line (an error naming a path or a
// snapshot the user gave, a name or message a peer sent): a newline split the one-line
// error in two, an escape sequence (\x1b[...) reached the terminal raw. Shown escaped
// instead: \n, \r, \t, else \xHH. C0 (0x00-0x1f), DEL (0x7f) and C1 (0x80-0x9f) are
// escaped; the backslash is not. One function for the CLI's error lines and for the peer
// code's messages: the peer code escaped \n as \x0a and let C1 through.

const ESCAPES: Record<string, string> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/**
 * `text` with its control characters escaped, so it prints as one line; cut to `max`
 * characters and "..." when longer (text from a peer, which may send any amount).
 */
export function escapeControls(text: string, max = Infinity): string {
  const t = String(text).replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => ESCAPES[c] ?? `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return t.length > max ? `${t.slice(0, max)}...` : t;
}
