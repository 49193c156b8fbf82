// The man pages: the committed man/*.1 must be what the command definitions render to
// now, every command must have a page naming all its flags, and the roff must print
// text exactly as written (checked with groff itself when it is installed).
//
// The pages are rendered from the compiled commands in dist/ (oclif loads them there):
// `npm test` builds first; after editing a command, run `npm run man`.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Config, settings } from '@oclif/core';
import { beforeAll, describe, expect, it } from 'vitest';
import { loadManual, packageRoot, renderAll } from '../../src/manual/generate.js';
import { commandPageName, renderCommandPage, renderManual, type ManCommand, type Manual } from '../../src/manual/roff.js';
import { exitCodeLines } from '../../commands/_cli/exit-codes.js';
import { hasTool } from '../support/external-tools.js';

const ROOT = packageRoot();
const MAN_DIR = path.join(ROOT, 'man');
const REGENERATE = 'run `npm run man` and commit man/';
const hasGroff = hasTool('groff');

/** What groff prints for a page: plain text, no overstriking. */
function groffText(page: string): { text: string; warnings: string } {
  const r = spawnSync('groff', ['-man', '-Tutf8', '-ww', '-P-c', '-P-u', '-P-b'], { input: page, encoding: 'utf8' });
  expect(r.status).toBe(0);
  return { text: r.stdout, warnings: r.stderr };
}

/** The page without `\\%` (no hyphenation in the next word), which tests need not spell. */
function withoutNoHyphenation(page: string): string {
  return page.replaceAll('\\%', '');
}

/** Command ids from the source tree, the way oclif's pattern strategy names them. */
function sourceCommandIds(dir = path.join(ROOT, 'commands'), prefix: string[] = []): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    if (e.name.startsWith('_')) return [];
    if (e.isDirectory()) return sourceCommandIds(path.join(dir, e.name), [...prefix, e.name]);
    if (!e.name.endsWith('.ts') || e.name.endsWith('.d.ts')) return [];
    const name = e.name.slice(0, -3);
    return [(name === 'index' ? prefix : [...prefix, name]).join(':')];
  });
}

describe('generated man pages', () => {
  let manual: Manual;
  let pages: Map<string, string>;
  beforeAll(async () => {
    manual = await loadManual(MAN_DIR);
    pages = await renderAll(MAN_DIR);
  });

  it('man/*.1 are what the command definitions render to now', () => {
    const onDisk = fs.existsSync(MAN_DIR) ? fs.readdirSync(MAN_DIR).filter((f) => f.endsWith('.1')) : [];
    const stale = [
      ...[...pages].filter(([file, text]) => !fs.existsSync(path.join(MAN_DIR, file)) || fs.readFileSync(path.join(MAN_DIR, file), 'utf8') !== text).map(([file]) => `man/${file} (missing or out of date)`),
      ...onDisk.filter((f) => !pages.has(f)).map((f) => `man/${f} (no such command any more)`),
    ];
    expect(stale, `man pages differ from the command definitions: ${REGENERATE}`).toEqual([]);
  });

  it('renders the same text twice', async () => {
    expect(await renderAll(MAN_DIR)).toEqual(pages);
  });

  it('every command in commands/ is built and has a page naming each of its flags', async () => {
    settings.enableAutoTranspile = false;
    const config = await Config.load(ROOT);
    const built = new Map(config.commands.map((c) => [c.id, c]));
    for (const id of sourceCommandIds()) {
      expect(built.has(id), `commands/${id.replaceAll(':', '/')}.ts is not in dist/: run \`npm run build\``).toBe(true);
      if (built.get(id)!.hidden) continue;
      const page = withoutNoHyphenation(pages.get(`${commandPageName('imgstream', id)}.1`) ?? '');
      expect(page, `no man page for ${id}: ${REGENERATE}`).not.toBe('');
      const cmd = manual.commands.find((c) => c.id === id)!;
      for (const flag of cmd.flags) {
        expect(page, `${id}: --${flag.name}`).toContain(`\\-\\-${flag.name.replaceAll('-', '\\-')}`);
        if (flag.char) expect(page, `${id}: -${flag.char}`).toContain(`\\fB\\-${flag.char}\\fR`);
      }
      for (const arg of cmd.args) expect(page, `${id}: ${arg.name}`).toContain(arg.name.toUpperCase());
    }
    // the global flags come from the base command, so every page has them
    for (const cmd of manual.commands) expect(cmd.flags.map((f) => f.name)).toEqual(expect.arrayContaining(['json', 'quiet']));
  });

  it('the overview lists every command and the same exit codes as --help', () => {
    const overview = withoutNoHyphenation(pages.get('imgstream.1')!);
    for (const cmd of manual.commands) {
      expect(overview).toContain(`.BR ${commandPageName('imgstream', cmd.id).replaceAll('-', '\\-')} (1)`);
      expect(overview).toContain(`\\fB${['imgstream', ...cmd.id.split(':')].join(' ')}\\fR`);
    }
    for (const name of ['IMGSTREAM_LOCK_DIR', 'IMGSTREAM_DEBUG']) expect(overview).toContain(`.TP\n\\fB${name}\\fR`);
    const rows = manual.exitStatus.map((r) => `${String(r.status).padStart(3)}  ${r.meaning}`);
    expect(rows).toEqual(exitCodeLines());
  });

  it('leaves hand-written pages of other sections alone and points to them', () => {
    const others = fs.existsSync(MAN_DIR) ? fs.readdirSync(MAN_DIR).filter((f) => /\.[2-9]$/.test(f)) : [];
    for (const f of others) {
      expect(pages.has(f)).toBe(false);
      const [, name, section] = f.match(/^(.+)\.(\d)$/)!;
      expect(pages.get('imgstream.1')).toContain(`.BR \\%${name.replaceAll('-', '\\-')} (${section})`);
    }
  });

  it.skipIf(!hasGroff)('every page formats without a groff warning', () => {
    for (const [file, page] of pages) expect(groffText(page).warnings, file).toBe('');
  });
});

describe('roff escaping', () => {
  const command: ManCommand = {
    id: 'volume:frob',
    summary: 'Frob a volume.',
    description: [
      'Reads C:\\images\\disk.raw and \\fBnot bold\\fR.',
      '.hidden files start with a dot,\n.so this line would source a file, and',
      "'quoted words at a line start are no request either.",
      'The --block-size flag and -b are options; write-anywhere is a word; "-" means stdin.',
    ].join('\n\n'),
    args: [{ name: 'volume', description: 'Volume file.', required: true }],
    flags: [
      { name: 'block-size', char: 'b', description: 'Block size, e.g. 4K.', takesValue: true, default: '4K' },
      { name: 'dry-run', description: 'Change nothing.', takesValue: false, allowNo: true },
    ],
    examples: ['<%= config.bin %> volume frob vm.vol --block-size 64K', { description: 'With a backslash:', command: 'imgstream volume frob C:\\vm.vol' }],
    aliases: [],
  };
  const manual: Manual = {
    bin: 'imgstream',
    version: '9.9.9',
    summary: 'test',
    about: [],
    commands: [command],
    topics: [],
    exitStatus: [{ status: 0, meaning: 'success' }],
    environment: [],
    otherPages: [],
  };
  const page = renderCommandPage(command, manual);
  const lines = page.split('\n');
  const plain = withoutNoHyphenation(page);

  it('prints backslashes as themselves, so no escape in the text takes effect', () => {
    expect(page).toContain('C:\\eimages\\edisk.raw');
    expect(page).toContain('\\efBnot bold\\efR');
    expect(page).toContain('C:\\evm.vol');
  });

  it('guards text lines starting with a dot or an apostrophe', () => {
    expect(lines).toContain('\\&.hidden files start with a dot,');
    expect(lines).toContain('\\&.so this line would source a file, and');
    expect(lines).toContain("\\&'quoted words at a line start are no request either.");
    // every line that roff reads as a request is one the renderer meant
    const requests = lines.filter((l) => /^[.']/.test(l));
    for (const r of requests) expect(r).toMatch(/^\.(\\"|TH|SH|SS|PP|TP|IP|RS|RE|EX|EE|SY|YS|BR|PD|ad)( |$)/);
  });

  it('writes option names with \\- and leaves hyphens in words alone', () => {
    expect(plain).toContain('\\fB\\-b\\fR, \\fB\\-\\-block\\-size\\fR=\\fIvalue\\fR');
    expect(plain).toContain('\\fB\\-\\-[no\\-]dry\\-run\\fR');
    expect(plain).toContain('The \\fB\\-\\-block\\-size\\fR flag and \\fB\\-b\\fR are options');
    expect(page).toContain(' write-anywhere ');
    expect(page).toContain('"\\-" means stdin');
    expect(page).toContain('$ imgstream volume frob vm.vol \\-\\-block\\-size 64K');
    expect(page).not.toContain('<%');
    expect(page).toContain('.TH IMGSTREAM\\-VOLUME\\-FROB 1 "" "imgstream 9.9.9" "imgstream manual"');
  });

  it('has the sections of a command page, in order', () => {
    const sections = lines.filter((l) => l.startsWith('.SH ')).map((l) => l.slice(4));
    expect(sections).toEqual(['NAME', 'SYNOPSIS', 'DESCRIPTION', 'ARGUMENTS', 'OPTIONS', 'EXAMPLES', '"EXIT STATUS"', '"SEE ALSO"']);
    expect(renderManual(manual).get('imgstream-volume-frob.1')).toBe(page);
  });

  it("uses a command's own usage lines for the synopsis, and names the command in each", () => {
    const own = renderCommandPage({ ...command, usage: ['volume frob VOLUME [--dry-run]', '<%= command.id %> --help'] }, manual);
    const synopsis = own.slice(own.indexOf('.SH SYNOPSIS'), own.indexOf('.SH DESCRIPTION'));
    expect(synopsis).toBe('.SH SYNOPSIS\n.SY "imgstream volume frob"\nVOLUME [\\-\\-dry\\-run]\n.YS\n.SY "imgstream volume frob"\n\\-\\-help\n.YS\n');
  });

  it.skipIf(!hasGroff)('formats to the text as written (groff)', () => {
    const { text, warnings } = groffText(page);
    expect(warnings).toBe('');
    const flat = text.replace(/\s+/g, ' ');
    expect(flat).toContain('Reads C:\\images\\disk.raw and \\fBnot bold\\fR.');
    expect(flat).toContain('.hidden files start with a dot, .so this line would source a file, and');
    expect(flat).toContain("'quoted words at a line start are no request either.");
    expect(flat).toContain('The --block-size flag and -b are options; write-anywhere is a word; "-" means stdin.');
    expect(flat).toContain('-b, --block-size=value');
    expect(flat).toContain('$ imgstream volume frob C:\\vm.vol');
  });
});
