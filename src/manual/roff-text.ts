// Roff text: escaping so groff prints text exactly as written, and turning the light
// markup of command descriptions (blank-line paragraphs, "- " lists, indented blocks,
// `code`, --flags) into man(7) requests. Pure string functions.

/** Backslashes print as themselves (`\e`); nothing else changes. */
export function escapeBackslashes(text: string): string {
  return text.replaceAll('\\', '\\e');
}

/**
 * Literal text (option names, command lines, file names): every hyphen becomes `\-`, so
 * it prints as the ASCII minus a shell needs, never as a typographic hyphen, and is never
 * hyphenated across lines.
 */
export function literal(text: string): string {
  return escapeBackslashes(text).replaceAll('-', '\\-');
}

/**
 * `\%` before every word of a text line: no hyphenation inside option names, command
 * names and placeholders (a break at a hyphen they contain is still allowed).
 */
export function unhyphenated(roff: string): string {
  return roff
    .split(' ')
    .map((w) => (w === '' || w.startsWith('\\%') ? w : `\\%${w}`))
    .join(' ');
}

/** A macro argument in double quotes (.TH, .SY): a quote inside is `\(dq`. */
export function quoted(text: string): string {
  return `"${text.replaceAll('"', '\\(dq')}"`;
}

/**
 * A text line as roff reads it: a line starting with "." or "'" would be a request, so
 * it gets the zero-width `\&` in front; leading blanks would force a break, so they go.
 */
export function textLine(line: string): string {
  const trimmed = line.trim();
  return /^[.']/.test(trimmed) ? `\\&${trimmed}` : trimmed;
}

const CODE_SPAN = /`([^`\n]+)`/g;
// An option where a word starts: --long-name, or -x not followed by a word character.
const OPTION = /(^|[\s(["'=/,])(--[A-Za-z0-9][\w-]*|-[A-Za-z](?![\w-]))/g;
// A lone "-" as a word (minus sign, or "-" meaning stdin/stdout).
const LONE_MINUS = /(^|[\s("'])-(?=$|[\s)"',.;:])/g;

/** Prose without fonts (the NAME line, which whatis parses): options still get `\-`. */
export function plainProse(text: string): string {
  return escapeBackslashes(text)
    .replace(OPTION, (_m, before: string, option: string) => `${before}${option.replaceAll('-', '\\-')}`)
    .replace(LONE_MINUS, (_m, before: string) => `${before}\\-`);
}

/** Prose: `code` spans and --options are set in bold, with literal hyphens. */
export function prose(text: string): string {
  let out = '';
  let last = 0;
  for (const m of text.matchAll(CODE_SPAN)) {
    out += proseWithoutCode(text.slice(last, m.index));
    const atWordStart = m.index === 0 || /\s$/.test(text.slice(0, m.index));
    const code = bold(unhyphenated(literal(m[1])));
    out += atWordStart ? code : code.replace('\\%', '');
    last = m.index + m[0].length;
  }
  return out + proseWithoutCode(text.slice(last));
}

function proseWithoutCode(text: string): string {
  return escapeBackslashes(text)
    .replace(OPTION, (_m, before: string, option: string) => `${before}${bold(`${/^\s?$/.test(before) ? '\\%' : ''}${option.replaceAll('-', '\\-')}`)}`)
    .replace(LONE_MINUS, (_m, before: string) => `${before}\\-`);
}

export function bold(roff: string): string {
  return `\\fB${roff}\\fR`;
}

export function italic(roff: string): string {
  return `\\fI${roff}\\fR`;
}

/** Lines of a preformatted block (.EX keeps them as they are): literal, guarded. */
export function exampleBlock(lines: readonly string[]): string[] {
  return ['.EX', ...lines.map((l) => (/^[.']/.test(l) ? `\\&${literal(l)}` : literal(l))), '.EE'];
}

/**
 * Description text as roff lines. Blank lines separate paragraphs; a paragraph whose
 * lines are all indented is preformatted; lines starting with "- " or "* " are list
 * items. `nested` is for text inside a .TP item: paragraphs continue with .IP (keeping
 * the item's indent) instead of .PP, and list items become plain broken lines.
 */
export function paragraphs(text: string, nested = false): string[] {
  const out: string[] = [];
  const blocks = text
    .replaceAll('\r\n', '\n')
    .split(/\n[ \t]*\n/)
    .map((b) => b.replace(/^\n+|\s+$/g, ''))
    .filter((b) => b.trim() !== '');
  blocks.forEach((block, i) => {
    const lines = block.split('\n');
    if (i > 0) out.push(nested ? '.IP' : '.PP');
    if (lines.every((l) => /^(\t| {2,})/.test(l))) {
      const indent = Math.min(...lines.map((l) => l.match(/^[ \t]*/)![0].length));
      out.push(...(nested ? [] : ['.RS 4']), ...exampleBlock(lines.map((l) => l.slice(indent))), ...(nested ? [] : ['.RE']));
      return;
    }
    for (const line of lines) {
      const item = line.match(/^\s*[-*]\s+(.*)$/);
      if (item && nested) {
        out.push('.br', textLine(`\\(bu ${prose(item[1])}`));
      } else if (item) {
        out.push('.IP \\(bu 2', textLine(prose(item[1])));
      } else {
        out.push(...sentences(line).flatMap((l) => wrapSource(prose(l)).map(textLine)));
      }
    }
  });
  return out;
}

/**
 * "New sentence, new line", as man(7) asks: roff then knows where sentences end (and
 * spaces them), and the source stays diffable. A period followed by a capital letter
 * ends a sentence; "e.g. 96M" does not.
 */
function sentences(line: string): string[] {
  return line.split(/(?<=[a-z0-9)"'][.!?])\s+(?=[A-Z])/);
}

/**
 * Source lines of at most `width` bytes where possible (filled text joins them again).
 * Never after a word ending in ".", "!" or "?": roff would take it for a sentence end.
 */
export function wrapSource(roff: string, width = 80): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of roff.split(' ')) {
    if (line !== '' && line.length + 1 + word.length > width && !/[.!?]["')\]]*$/.test(line)) {
      lines.push(line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  return line === '' ? [] : [...lines, line];
}
