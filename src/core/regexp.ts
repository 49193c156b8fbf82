// A literal string inside a regular expression: file names and user-given names in the
// patterns that find temporary files and rewrite messages.

/** `text` with every character a RegExp gives a meaning to escaped. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
