// Man pages from plain command descriptions: one section-1 page per command
// (imgstream-volume-create.1) and the imgstream.1 overview. Pure: data in, text out, the
// same text for the same data (no dates, everything sorted), so the committed pages can
// be compared with a fresh rendering.
import { bold, exampleBlock, italic, literal, paragraphs, plainProse, prose, quoted, textLine, unhyphenated, wrapSource } from './roff-text.js';
import { escapeRegExp } from '../core/regexp.js';

export interface ManArgument {
  name: string;
  description?: string;
  required?: boolean;
  multiple?: boolean;
  options?: readonly string[];
  default?: unknown;
}

export interface ManFlag {
  name: string;
  char?: string;
  summary?: string;
  description?: string;
  /** false for a boolean switch, true for a flag that takes a value */
  takesValue: boolean;
  helpValue?: string;
  options?: readonly string[];
  default?: unknown;
  required?: boolean;
  multiple?: boolean;
  /** a boolean that also has a --no- form */
  allowNo?: boolean;
  env?: string;
  exclusive?: readonly string[];
  dependsOn?: readonly string[];
  /** oclif's helpGroup ("GLOBAL"): listed in its own subsection after the others */
  group?: string;
}

/** An oclif example: a command line, or a description with a command line. */
export type ManExample = string | { description?: string; command: string };

export interface ManCommand {
  /** oclif id, topic and command joined by ":" ("volume:create") */
  id: string;
  summary?: string;
  description?: string;
  /** oclif usage lines, without the bin; the synopsis is built from args and flags if absent */
  usage?: readonly string[];
  args: readonly ManArgument[];
  flags: readonly ManFlag[];
  examples: readonly ManExample[];
  aliases: readonly string[];
}

export interface ManTopic {
  name: string;
  description?: string;
}

export interface ExitStatusRow {
  status: number;
  meaning: string;
}

export interface EnvironmentVariable {
  name: string;
  description: string;
}

/** A page not rendered here (hand-written, e.g. imgstream-stream.5), for SEE ALSO. */
export interface ManPageRef {
  name: string;
  section: string;
}

export interface Manual {
  bin: string;
  version: string;
  /** one line for the overview's NAME */
  summary: string;
  /** paragraphs for the overview's DESCRIPTION */
  about: readonly string[];
  commands: readonly ManCommand[];
  topics: readonly ManTopic[];
  exitStatus: readonly ExitStatusRow[];
  environment: readonly EnvironmentVariable[];
  otherPages: readonly ManPageRef[];
}

/** "volume:create" -> "imgstream-volume-create" (the page name; the file adds ".1"). */
export function commandPageName(bin: string, id: string): string {
  return [bin, ...id.split(':')].join('-');
}

/** Every page of the manual by file name, in sorted order. */
export function renderManual(manual: Manual): Map<string, string> {
  const pages = new Map<string, string>();
  pages.set(`${manual.bin}.1`, renderOverviewPage(manual));
  for (const cmd of sortedCommands(manual)) {
    const file = `${commandPageName(manual.bin, cmd.id)}.1`;
    if (pages.has(file)) throw new Error(`two commands would share the man page ${file}`);
    pages.set(file, renderCommandPage(cmd, manual));
  }
  return new Map([...pages].sort(([a], [b]) => compare(a, b)));
}

export function renderCommandPage(cmd: ManCommand, manual: Manual): string {
  const { bin } = manual;
  const name = commandPageName(bin, cmd.id);
  const words = commandWords(bin, cmd.id);
  const fill = (text: string) => fillTemplate(text, bin, words);
  const flags = cmd.flags;
  const out = [...header(name, manual)];

  out.push('.SH NAME', textLine(`${literal(name)} \\- ${plainProse(oneLine(fill(cmd.summary ?? '')))}`));

  out.push('.SH SYNOPSIS', ...synopsis(cmd, words, fill));

  out.push('.SH DESCRIPTION');
  const description = [cmd.summary, cmd.description].filter((t): t is string => Boolean(t?.trim())).map(fill);
  out.push(...paragraphs(description.join('\n\n')));
  if (cmd.aliases.length > 0) {
    const aliases = cmd.aliases.map((a) => bold(literal(commandWords(bin, a)))).join(', ');
    out.push('.PP', textLine(`Also available as ${aliases}.`));
  }

  if (cmd.args.length > 0) {
    out.push('.SH ARGUMENTS');
    // a tag column as wide as the longest name (up to a point), so descriptions line up
    const width = Math.min(16, Math.max(...cmd.args.map((a) => a.name.length)) + 2);
    for (const arg of cmd.args) {
      out.push(`.TP ${width}`, textLine(unhyphenated(italic(literal(arg.name.toUpperCase())))));
      out.push(...paragraphs(fill(arg.description ?? ''), true));
      out.push(...facts([
        arg.required === false ? 'Optional.' : '',
        arg.multiple ? 'May be given more than once.' : '',
        arg.options?.length ? `One of: ${arg.options.map((o) => bold(literal(o))).join(', ')}.` : '',
        shownDefault(arg.default) ? `Default: ${bold(literal(shownDefault(arg.default)!))}.` : '',
      ]));
    }
  }

  if (flags.length > 0) {
    out.push('.SH OPTIONS');
    for (const [group, members] of flagGroups(flags)) {
      if (group) out.push(`.SS ${quoted(plainProse(`${titleCase(group)} options`))}`);
      for (const flag of members) out.push(...flagItem(flag, fill));
    }
  }

  if (cmd.examples.length > 0) out.push('.SH EXAMPLES', ...examples(cmd.examples, bin, fill));

  out.push(...exitStatusSection(manual.exitStatus));

  const topic = topicOf(cmd.id);
  const siblings = topic === '' ? [] : sortedCommands(manual).filter((c) => c.id !== cmd.id && topicOf(c.id) === topic);
  out.push(...seeAlso([{ name: bin, section: '1' }, ...siblings.map((c) => ({ name: commandPageName(bin, c.id), section: '1' }))]));
  return `${out.join('\n')}\n`;
}

export function renderOverviewPage(manual: Manual): string {
  const { bin } = manual;
  const commands = sortedCommands(manual);
  const out = [...header(bin, manual)];

  out.push('.SH NAME', textLine(`${literal(bin)} \\- ${plainProse(oneLine(manual.summary))}`));

  out.push(
    '.SH SYNOPSIS',
    `.SY ${literal(bin)}`,
    textLine(`${italic('command')} [${italic('options')}] [${italic('arguments')}]`),
    '.YS',
    `.SY ${literal(bin)}`,
    textLine(`[${italic('command')}] ${bold('\\-\\-help')}`),
    '.YS',
    `.SY ${literal(bin)}`,
    textLine(`${bold('help')} [${italic('command')}]`),
    '.YS',
  );

  out.push('.SH DESCRIPTION', ...paragraphs(manual.about.join('\n\n')));

  if (commands.length > 0) {
    out.push('.SH COMMANDS');
    const first = commands[0];
    const intro = `Each command has its own page, named after the command with hyphens: ${bold(literal(commandWords(bin, first.id)))} is described in ${bold(unhyphenated(literal(commandPageName(bin, first.id))))}(1).`;
    out.push(...wrapSource(intro).map(textLine));
    const topics = [...new Set(commands.map((c) => topicOf(c.id)))].sort(compare);
    for (const topic of topics) {
      if (topic !== '') {
        out.push(`.SS ${quoted(literal(topic.replaceAll(':', ' ')))}`);
        const about = manual.topics.find((t) => t.name === topic)?.description;
        if (about) out.push(...paragraphs(sentence(about)));
      }
      for (const cmd of commands.filter((c) => topicOf(c.id) === topic)) {
        const args = cmd.args.map((a) => argPlaceholder(a)).join(' ');
        out.push('.TP', textLine(unhyphenated(`${bold(literal(commandWords(bin, cmd.id)))}${args ? ` ${args}` : ''}`)));
        out.push(...paragraphs(fillTemplate(cmd.summary ?? '', bin, commandWords(bin, cmd.id)), true));
      }
    }
  }

  const common = commonFlags(commands);
  out.push('.SH OPTIONS', textLine('Every command accepts these options:'));
  for (const flag of common) out.push(...flagItem(flag, (t) => t));
  out.push('.TP', textLine(bold('\\-\\-help')), textLine("Print the help of imgstream or of the command, and exit (imgstream help COMMAND prints the same)."));

  out.push(...exitStatusSection(manual.exitStatus));

  if (manual.environment.length > 0) {
    out.push('.SH ENVIRONMENT');
    for (const v of manual.environment) out.push('.TP', textLine(bold(literal(v.name))), ...paragraphs(v.description, true));
  }

  const others = [...manual.otherPages].sort((a, b) => compare(a.section, b.section) || compare(a.name, b.name));
  out.push(...seeAlso([...commands.map((c) => ({ name: commandPageName(bin, c.id), section: '1' })), ...others]));
  return `${out.join('\n')}\n`;
}

function header(name: string, manual: Manual): string[] {
  return [
    `.\\" Generated by "npm run man" from the ${manual.bin} command definitions; do not edit.`,
    `.TH ${literal(name.toUpperCase())} 1 "" ${quoted(`${manual.bin} ${manual.version}`)} ${quoted(`${manual.bin} manual`)}`,
    // ragged right: no stretched spaces in lines full of option names
    '.ad l',
  ];
}

function synopsis(cmd: ManCommand, words: string, fill: (t: string) => string): string[] {
  if (cmd.usage && cmd.usage.length > 0) {
    // oclif usage lines may or may not repeat the command; the synopsis always names it
    return cmd.usage.flatMap((u) => {
      const rest = fill(u).trim().replace(new RegExp(`^(${escapeRegExp(cmd.id)}|${escapeRegExp(words.split(' ').slice(1).join(' '))})\\b`), '').trim();
      return [`.SY ${quoted(literal(words))}`, ...(rest ? [textLine(literal(rest))] : []), '.YS'];
    });
  }
  const lines = [`.SY ${quoted(literal(words))}`];
  for (const arg of cmd.args) lines.push(textLine(unhyphenated(argPlaceholder(arg))));
  const flags = sortedFlags(cmd.flags);
  const ordered = [...flags.filter((f) => f.required && !f.group), ...flags.filter((f) => !f.required && !f.group), ...flags.filter((f) => f.group)];
  for (const flag of ordered) {
    const value = flag.takesValue ? ` ${italic(literal(valuePlaceholder(flag)))}` : '';
    const repeat = flag.multiple ? '\\&...' : '';
    const text = `${bold(flagName(flag))}${value}`;
    lines.push(textLine(unhyphenated(flag.required ? `${text}${repeat}` : `[${text}]${repeat}`)));
  }
  lines.push('.YS');
  return lines;
}

function flagItem(flag: ManFlag, fill: (t: string) => string): string[] {
  const names = [flag.char ? bold(literal(`-${flag.char}`)) : '', bold(flagName(flag))].filter(Boolean).join(', ');
  const value = flag.takesValue ? `=${italic(literal(valuePlaceholder(flag)))}` : '';
  const text = [flag.summary, flag.description].filter((t): t is string => Boolean(t?.trim())).map(fill).join('\n\n');
  const shown = shownDefault(flag.default);
  return [
    '.TP',
    textLine(unhyphenated(`${names}${value}`)),
    ...paragraphs(text, true),
    ...facts([
      flag.required ? 'Required.' : '',
      shown && flag.takesValue ? `Default: ${bold(literal(shown))}.` : '',
      flag.options?.length ? `One of: ${flag.options.map((o) => bold(literal(o))).join(', ')}.` : '',
      flag.multiple ? 'May be given more than once.' : '',
      flag.env ? `Also read from the environment variable ${bold(literal(flag.env))}.` : '',
      flag.exclusive?.length ? `Cannot be used with ${flag.exclusive.map((f) => bold(literal(`--${f}`))).join(', ')}.` : '',
      flag.dependsOn?.length ? `Requires ${flag.dependsOn.map((f) => bold(literal(`--${f}`))).join(', ')}.` : '',
    ]),
  ];
}

/** Short sentences after an item's description, in the same paragraph. */
function facts(sentences: string[]): string[] {
  return sentences.filter(Boolean).map(textLine);
}

function examples(list: readonly ManExample[], bin: string, fill: (t: string) => string): string[] {
  const out: string[] = [];
  let pendingCommands: string[] = [];
  const flush = () => {
    if (pendingCommands.length === 0) return;
    out.push('.PP', '.RS 4', ...exampleBlock(pendingCommands.map((c) => `$ ${c}`)), '.RE');
    pendingCommands = [];
  };
  for (const example of list) {
    const { description, commands } = splitExample(example, bin, fill);
    if (description) {
      flush();
      out.push('.PP', ...paragraphs(description).filter((l) => l !== '.PP'));
    }
    pendingCommands.push(...commands);
    if (description) flush();
  }
  flush();
  // the first .PP right after .SH adds nothing
  return out[0] === '.PP' ? out.slice(1) : out;
}

/** oclif's example forms: "cmd", "description\ncmd...", or { description, command }. */
function splitExample(example: ManExample, bin: string, fill: (t: string) => string): { description?: string; commands: string[] } {
  const isCommand = (line: string) => line.startsWith(`${bin} `) || line === bin || line.startsWith('$ ');
  const strip = (line: string) => line.replace(/^\$ /, '');
  if (typeof example !== 'string') return { description: example.description && fill(example.description), commands: fill(example.command).split('\n').map(strip) };
  const lines = fill(example).split('\n').filter((l) => l.trim() !== '');
  if (lines.length >= 2 && !isCommand(lines[0]) && lines.slice(1).every(isCommand)) {
    return { description: lines[0], commands: lines.slice(1).map(strip) };
  }
  return { commands: lines.map(strip) };
}

function exitStatusSection(rows: readonly ExitStatusRow[]): string[] {
  const sorted = [...rows].sort((a, b) => a.status - b.status);
  // .PD 0: a table, one row a line, not paragraphs apart
  return ['.SH "EXIT STATUS"', '.PD 0', ...sorted.flatMap((r) => ['.TP 4', textLine(bold(String(r.status))), textLine(unhyphenated(prose(r.meaning)))]), '.PD'];
}

function seeAlso(pages: readonly ManPageRef[]): string[] {
  if (pages.length === 0) return [];
  return ['.SH "SEE ALSO"', ...pages.map((p, i) => `.BR \\%${literal(p.name)} (${p.section})${i < pages.length - 1 ? ',' : ''}`)];
}

/** Flags every command has, described alike (--json, --quiet). */
function commonFlags(commands: readonly ManCommand[]): ManFlag[] {
  if (commands.length === 0) return [];
  const [first, ...rest] = commands;
  const same = (a: ManFlag, b: ManFlag) => a.char === b.char && a.takesValue === b.takesValue && a.description === b.description && a.summary === b.summary;
  return sortedFlags(first.flags).filter((f) => rest.every((c) => c.flags.some((g) => g.name === f.name && same(f, g))));
}

function flagGroups(flags: readonly ManFlag[]): [string, ManFlag[]][] {
  const groups = new Map<string, ManFlag[]>();
  for (const flag of sortedFlags(flags)) {
    const group = flag.group ?? '';
    groups.set(group, [...(groups.get(group) ?? []), flag]);
  }
  return [...groups].sort(([a], [b]) => compare(a, b));
}

function sortedFlags(flags: readonly ManFlag[]): ManFlag[] {
  return [...flags].sort((a, b) => compare(a.name, b.name));
}

function sortedCommands(manual: Manual): ManCommand[] {
  return [...manual.commands].sort((a, b) => compare(a.id, b.id));
}

function flagName(flag: ManFlag): string {
  return flag.allowNo && !flag.takesValue ? `\\-\\-[no\\-]${literal(flag.name)}` : literal(`--${flag.name}`);
}

function valuePlaceholder(flag: ManFlag): string {
  if (flag.helpValue) return flag.helpValue;
  if (flag.options?.length) return flag.options.join('|');
  return 'value';
}

function argPlaceholder(arg: ManArgument): string {
  const name = `${italic(literal(arg.name.toUpperCase()))}${arg.multiple ? '\\&...' : ''}`;
  return arg.required === false ? `[${name}]` : name;
}

function shownDefault(value: unknown): string | undefined {
  if (value === undefined || value === null || value === false || value === '') return undefined;
  if (Array.isArray(value)) return value.length ? value.map(String).join(', ') : undefined;
  if (typeof value === 'function' || typeof value === 'object') return undefined;
  return String(value);
}

/** "volume:create" -> "imgstream volume create" */
function commandWords(bin: string, id: string): string {
  return [bin, ...id.split(':')].join(' ');
}

function topicOf(id: string): string {
  return id.split(':').slice(0, -1).join(':');
}

/** The oclif templates that appear in command text. */
function fillTemplate(text: string, bin: string, words: string): string {
  return text.replace(/<%[=-]\s*config\.bin\s*%>/g, bin).replace(/<%[=-]\s*command\.id\s*%>/g, words.split(' ').slice(1).join(' '));
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().replace(/\.$/, '');
}

function sentence(text: string): string {
  const t = text.trim();
  return /[.!?]$/.test(t) ? t : `${t}.`;
}

function titleCase(group: string): string {
  return group.charAt(0).toUpperCase() + group.slice(1).toLowerCase();
}

/** Code-point order: the same everywhere, unlike localeCompare. */
function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
