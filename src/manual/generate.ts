// Writes man/*.1 from the command definitions. The commands are found by oclif's own
// Config, the discovery the CLI itself uses, so a new command gets its page without a
// list to keep up to date. Reads the compiled commands in dist/: build first.
//
//   node dist/src/manual/generate.js man     (npm run man)
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Config, settings, type Command } from '@oclif/core';
import { ABOUT, ENVIRONMENT, exitStatusRows } from './overview.js';
import { renderManual, type ManArgument, type ManCommand, type ManFlag, type ManPageRef, type Manual } from './roff.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** The package root: the nearest folder above this file with a package.json. */
export function packageRoot(): string {
  for (let dir = here; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (path.dirname(dir) === dir) throw new Error(`no package.json above ${here}`);
  }
}

/** The manual as plain data, from the package's command definitions. */
export async function loadManual(manDir = path.join(packageRoot(), 'man')): Promise<Manual> {
  const root = packageRoot();
  // Always the compiled commands: oclif would otherwise (under NODE_ENV=test) look for
  // the .ts sources and a TypeScript loader this package does not have.
  settings.enableAutoTranspile = false;
  const config = await Config.load(root);
  const commands = config.commands.filter((c) => !c.hidden && c.pluginType === 'core' && hasSource(root, c)).map(toManCommand);
  return {
    bin: config.bin,
    version: config.version,
    summary: config.pjson.description ?? config.bin,
    about: ABOUT,
    commands,
    topics: config.topics.filter((t) => !t.hidden).map((t) => ({ name: t.name, description: t.description })),
    exitStatus: exitStatusRows(),
    environment: ENVIRONMENT,
    otherPages: handWrittenPages(manDir),
  };
}

/** Every generated page by file name, as `npm run man` would write it now. */
export async function renderAll(manDir?: string): Promise<Map<string, string>> {
  return renderManual(await loadManual(manDir));
}

/** Writes the pages into `dir` and removes generated pages of commands that are gone. */
export async function writeManual(dir: string): Promise<{ written: string[]; removed: string[] }> {
  const pages = await renderAll(dir);
  fs.mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  for (const [file, text] of pages) {
    const target = path.join(dir, file);
    if (fs.existsSync(target) && fs.readFileSync(target, 'utf8') === text) continue;
    fs.writeFileSync(target, text);
    written.push(file);
  }
  // Only section 1 is generated; hand-written pages (*.5, *.7) are never touched.
  const removed = fs.readdirSync(dir).filter((f) => f.endsWith('.1') && !pages.has(f));
  for (const file of removed) fs.rmSync(path.join(dir, file));
  return { written, removed };
}

/**
 * tsc never deletes output, so dist/ can still hold a command whose source is gone; it
 * is no command any more and gets no page. (No commands/ folder: an installed package,
 * where dist/ is all there is.)
 */
function hasSource(root: string, cmd: Command.Loadable): boolean {
  const rel = cmd.relativePath;
  if (!rel || rel[0] !== 'dist' || !fs.existsSync(path.join(root, rel[1] ?? ''))) return true;
  return fs.existsSync(path.join(root, ...rel.slice(1)).replace(/\.js$/, '.ts'));
}

function handWrittenPages(dir: string): ManPageRef[] {
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .map((f) => f.match(/^(.+)\.([2-9])$/))
    .filter((m): m is RegExpMatchArray => m !== null)
    .map((m) => ({ name: m[1], section: m[2] }));
}

function toManCommand(cmd: Command.Loadable): ManCommand {
  const usage = cmd.usage === undefined ? undefined : Array.isArray(cmd.usage) ? cmd.usage : [cmd.usage];
  return {
    id: cmd.id,
    summary: cmd.summary,
    description: cmd.description,
    usage,
    args: Object.entries(cmd.args ?? {})
      .filter(([, a]) => !a.hidden)
      .map(([name, a]): ManArgument => ({ name, description: a.description, required: a.required ?? false, multiple: a.multiple, options: a.options, default: a.default })),
    flags: Object.entries(cmd.flags ?? {})
      .filter(([, f]) => !f.hidden)
      .map(([name, f]): ManFlag => {
        const option = f.type === 'option' ? f : undefined;
        return {
          name,
          char: f.char,
          summary: f.summary,
          description: f.description,
          takesValue: f.type === 'option',
          helpValue: Array.isArray(option?.helpValue) ? option.helpValue.join(' ') : option?.helpValue,
          options: option?.options,
          default: f.default,
          required: f.required,
          multiple: option?.multiple,
          allowNo: f.type === 'boolean' ? f.allowNo : undefined,
          env: f.env,
          exclusive: f.exclusive,
          dependsOn: f.dependsOn,
          group: f.helpGroup,
        };
      }),
    examples: cmd.examples ?? [],
    aliases: (cmd.aliases ?? []).filter((a) => !(cmd.hiddenAliases ?? []).includes(a)),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: node dist/src/manual/generate.js <man directory>\n');
    process.exit(2);
  }
  const { written, removed } = await writeManual(dir);
  for (const f of written) process.stdout.write(`wrote ${path.join(dir, f)}\n`);
  for (const f of removed) process.stdout.write(`removed ${path.join(dir, f)}\n`);
  if (written.length === 0 && removed.length === 0) process.stdout.write(`${dir}: up to date\n`);
}
