// Build step: bundles every command, the code it runs and its pure-JavaScript dependencies
// (oclif, tar-stream, chalk, cli-progress, croner) into one CommonJS module, BUNDLE_PATH
// under dist/, which the executable loads through src/cli/load.ts and package.json's
// oclif section names as the explicit list of commands; then writes a V8 code cache for
// it (CODE_CACHE_PATH) from one run of the executable. Node reads one file instead of
// resolving and loading some 250, and with the cache V8 does not parse and compile it
// again. Native and lazily loaded packages stay outside (zstd-napi, @node-rs/crc32, the
// AWS SDK), found in node_modules at run time as before.
//
// A command's module, and what only it imports, is evaluated when oclif first asks for
// that command (COMMANDS holds getters), so a run evaluates one command's code; the code
// cache is written after every command was evaluated, so it holds all of their code.
//
// Two rewrites make the bundle start light and load from the cache:
// - Node's heavier built-in modules (crypto, net, tls, child_process, worker_threads, zlib,
//   ...) are required on first use, through a proxy, not when the bundle loads: most
//   commands never touch most of them.
// - import() calls (oclif's module loader, lilconfig) call globalThis.__imgstreamImport,
//   which the loader provides: code compiled by vm.Script with a cache cannot use import()
//   on Node 20. Loaded by Node itself (the oclif manifest step), the bundle falls back to
//   its own import().
//
// The bundle sits one directory below dist/src so that a worker script named relative to
// its module (new URL('../stream/compress-worker.js', import.meta.url)) resolves to the
// same file from the bundle as from the unbundled module.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild';
import { BUNDLE_FILE, CODE_CACHE_FILE, WRITE_CACHE_ENV } from '../cli/load.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
/** The bundle, relative to the repository root (package.json's oclif.commands.target names it too). */
export const BUNDLE_PATH = `dist/src/cli/${BUNDLE_FILE}`;
/** Its V8 code cache. */
export const CODE_CACHE_PATH = `dist/src/cli/${CODE_CACHE_FILE}`;
const EXECUTABLE = 'dist/commands/_cli/bin.js';

/** Built-in modules loaded on first use instead of at start (the cheap and always-loaded ones are left alone). */
const LAZY_BUILTINS = /^(node:)?(crypto|net|tls|child_process|worker_threads|zlib|perf_hooks|readline|readline\/promises|v8|assert|dgram|http|https|http2|dns|inspector|cluster)$/;

/**
 * A proxy in place of a built-in module: its property names are known at build time (so
 * esbuild's import helpers can copy them without loading it), its values are read from
 * the module, required on the first read.
 */
const LAZY_HELPER = `function __imgstreamLazy(id, keys) {
  let m;
  const load = () => (m ??= require(id));
  return new Proxy({}, {
    get: (_, k) => load()[k],
    set: (_, k, v) => ((load()[k] = v), true),
    has: (_, k) => k in load(),
    ownKeys: () => keys,
    getOwnPropertyDescriptor: (_, k) => (keys.includes(k) ? { configurable: true, enumerable: true, get: () => load()[k] } : undefined),
  });
}`;

function lazyBuiltins(): Plugin {
  const req = createRequire(import.meta.url);
  return {
    name: 'imgstream-lazy-builtins',
    setup(b) {
      b.onResolve({ filter: LAZY_BUILTINS }, (a) => (a.namespace === 'imgstream-lazy' ? { path: a.path, external: true } : { path: a.path.replace(/^node:/, ''), namespace: 'imgstream-lazy' }));
      b.onLoad({ filter: /.*/, namespace: 'imgstream-lazy' }, (a) => {
        const id = `node:${a.path}`;
        return { loader: 'js', contents: `module.exports = __imgstreamLazy(${JSON.stringify(id)}, ${JSON.stringify(Object.keys(req(id) as object))});` };
      });
    },
  };
}

/**
 * An import( call in code (not in a string, not a method named import) whose argument is
 * computed: esbuild bundles the ones that name a string literal (./sender.js, wsl-utils),
 * and those must stay as they are.
 */
const DYNAMIC_IMPORT = /(?<![\w$.'"`])import\((?!\s*['"])/g;

function routedDynamicImports(): Plugin {
  return {
    name: 'imgstream-dynamic-import',
    setup(b) {
      b.onLoad({ filter: /\.(c|m)?js$/ }, (a) => {
        const text = fs.readFileSync(a.path, 'utf8');
        if (text.search(DYNAMIC_IMPORT) < 0) return undefined;
        return { loader: 'js', contents: text.replace(DYNAMIC_IMPORT, '__imgstreamImport('), resolveDir: path.dirname(a.path) };
      });
    },
  };
}

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
  fs.rmSync(path.join(root, CODE_CACHE_PATH), { force: true });
  const commands = commandModules();
  if (commands.length === 0) throw new Error('no compiled commands under dist/commands: run tsc first');
  // each command's module (and what only it imports) is evaluated when oclif first asks
  // for that command, not when the bundle loads: a run evaluates one command's code
  const entry = [
    `export const COMMANDS = {};`,
    ...commands.map((c) => `Object.defineProperty(COMMANDS, ${JSON.stringify(c.id)}, { enumerable: true, get: () => require(${JSON.stringify(c.file)}).default });`),
    `export { run, flush } from '@oclif/core';`,
    `export { main } from ${JSON.stringify(path.join(root, 'dist', 'src', 'cli', 'main.js'))};`,
    `export { EXIT_CODES } from ${JSON.stringify(path.join(root, 'dist', 'src', 'core', 'errors.js'))};`,
  ].join('\n');
  await build({
    stdin: { contents: entry, resolveDir: root, sourcefile: 'imgstream-cli-entry.js', loader: 'js' },
    bundle: true,
    platform: 'node',
    format: 'cjs',
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
    plugins: [lazyBuiltins(), routedDynamicImports()],
    define: { 'import.meta.url': '__imgstreamUrl' },
    banner: {
      js: [
        "const __imgstreamUrl = require('node:url').pathToFileURL(__filename).href;",
        'const __imgstreamImport = globalThis.__imgstreamImport ?? ((s) => import(s));',
        LAZY_HELPER,
      ].join('\n'),
    },
  });
  escapeNonAscii(outfile);
}

/**
 * Leaves the bundle pure ASCII, so the loader can read it as latin1 into a one-byte string
 * (decoding UTF-8 costs a command's start milliseconds): esbuild escapes strings, but a
 * regular expression keeps its characters as written (ansis has a raw U+009B). A \uXXXX
 * escape means the same character in a regular expression, a string or an identifier.
 */
function escapeNonAscii(file: string): void {
  const text = fs.readFileSync(file, 'utf8');
  if (!/[^\x00-\x7f]/.test(text)) return;
  const out = text.replace(/[^\x00-\x7f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  fs.writeFileSync(file, out);
}

/**
 * Runs the executable once (a command that fails at once: nothing is touched) with the
 * loader told to write a code cache of everything that run compiled.
 */
export function writeCodeCache(): void {
  const cache = path.join(root, CODE_CACHE_PATH);
  const tmp = `${cache}.tmp`;
  fs.rmSync(cache, { force: true });
  const r = spawnSync(process.execPath, [path.join(root, EXECUTABLE), 'volume', 'info', path.join(root, 'dist', 'no-such-volume.vol')], {
    env: { ...process.env, [WRITE_CACHE_ENV]: tmp },
    encoding: 'utf8',
  });
  if (!fs.existsSync(tmp)) throw new Error(`no code cache was written (exit ${r.status}): ${r.stderr.trim()}`);
  fs.renameSync(tmp, cache);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv[2] === '--code-cache') writeCodeCache();
  else await bundleCli();
}
