// Build step: bundles every command, the code it runs and its pure-JavaScript dependencies
// (oclif, tar-stream, chalk, cli-progress, croner) into one ES module, BUNDLE_PATH under
// dist/, which the executable (commands/_cli/bin.ts) loads and package.json's oclif section
// names as the explicit list of commands. Node then reads and compiles one file instead of
// resolving and loading some 250, which takes a quarter or more off the CPU time of every
// command's start. Native and lazily loaded packages stay outside (zstd-napi,
// @node-rs/crc32, the AWS SDK), found in node_modules at run time as before.
//
// The bundle sits one directory below dist/src so that a worker script named relative to
// its module (new URL('../stream/compress-worker.js', import.meta.url)) resolves to the
// same file from the bundle as from the unbundled module.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The bundle, relative to the repository root (package.json's oclif.commands.target names it too). */
export const BUNDLE_PATH = 'dist/src/cli/imgstream.js';

/** The command ids and their compiled modules under dist/commands (as oclif's pattern strategy finds them). */
function commandModules(): Array<{ id: string; file: string }> {
  const dir = path.join(root, 'dist', 'commands');
  const out: Array<{ id: string; file: string }> = [];
  for (const rel of fs.readdirSync(dir, { recursive: true }).map(String).sort()) {
    if (!rel.endsWith('.js') || rel.startsWith(`_cli${path.sep}`)) continue;
    const parts = rel.slice(0, -'.js'.length).split(path.sep);
    if (parts.at(-1) === 'index') parts.pop();
    out.push({ id: parts.join(':'), file: path.join(dir, rel) });
  }
  return out;
}

export async function bundleCli(): Promise<void> {
  const outfile = path.join(root, BUNDLE_PATH);
  const commands = commandModules();
  if (commands.length === 0) throw new Error('no compiled commands under dist/commands: run tsc first');
  const entry = [
    ...commands.map((c, i) => `import c${i} from ${JSON.stringify(c.file)};`),
    `export const COMMANDS = {${commands.map((c, i) => `${JSON.stringify(c.id)}: c${i}`).join(', ')}};`,
    `export { run, flush } from '@oclif/core';`,
    `export { EXIT_CODES } from ${JSON.stringify(path.join(root, 'dist', 'src', 'core', 'errors.js'))};`,
  ].join('\n');
  await build({
    stdin: { contents: entry, resolveDir: root, sourcefile: 'imgstream-cli-entry.js', loader: 'js' },
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    outfile,
    // whitespace and syntax only: class and function names stay as written (errors name them)
    minifyWhitespace: true,
    minifySyntax: true,
    sourcemap: 'linked',
    legalComments: 'none',
    logLevel: 'warning',
    // native addons and what is loaded only when used; typescript: oclif's development mode
    external: ['zstd-napi', '@node-rs/*', '@aws-sdk/*', 'typescript'],
    // oclif and others are CommonJS: inside an ES module they need a require of their own
    banner: { js: "import { createRequire as __imgstreamRequire } from 'node:module'; const require = __imgstreamRequire(import.meta.url);" },
  });
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await bundleCli();
