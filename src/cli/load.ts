// Loads the CLI bundle (dist/src/cli/imgstream.cjs) the way Node's CommonJS loader would,
// but compiled with V8's code cache (imgstream.cjs.cache, written by the build): V8 then
// skips parsing and compiling the 1.2 MB bundle, about a third of a command's start.
// The loaded module is put in require's cache under the bundle's real path, so oclif,
// which requires the same file as its explicit command list (package.json), gets these
// exports instead of loading the bundle a second time. Without a cache, or with one V8
// rejects (another Node version, other V8 flags), the bundle is compiled as usual.
//
// Code compiled by vm.Script cannot use import() on this Node; the bundle's few import()
// calls (oclif's module loader, lilconfig) are rewritten at build time to call
// globalThis.__imgstreamImport, which this ES module provides.
import fs from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import Module, { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type * as Oclif from '@oclif/core';
import type { EXIT_CODES as ExitCodes } from '../core/errors.js';
import type { main as Main } from './main.js';

/** What the bundle exports. */
export interface LoadedCli {
  COMMANDS: Record<string, unknown>;
  run: typeof Oclif.run;
  flush: typeof Oclif.flush;
  EXIT_CODES: typeof ExitCodes;
  main: typeof Main;
}

/** The bundle and its code cache, beside this module in dist/src/cli/. */
export const BUNDLE_FILE = 'imgstream.cjs';
export const CODE_CACHE_FILE = 'imgstream.cjs.cache';
/** Set by the build only: where to write a code cache of what this run compiled, at exit. */
export const WRITE_CACHE_ENV = 'IMGSTREAM_BUILD_CODE_CACHE';

type ModuleInternals = typeof Module & { _cache: Record<string, Module>; _nodeModulePaths(dir: string): string[]; wrap(src: string): string };

export function loadCli(): LoadedCli {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const file = fs.realpathSync(path.join(here, BUNDLE_FILE));
  const M = Module as ModuleInternals;
  const loaded = M._cache[file];
  if (loaded) return loaded.exports as LoadedCli;
  (globalThis as { __imgstreamImport?: (s: string) => Promise<unknown> }).__imgstreamImport ??= (s) => import(s);
  // pure ASCII (the build escapes everything else): latin1 reads it without decoding UTF-8
  const source = fs.readFileSync(file, 'latin1');
  let cachedData: Buffer | undefined;
  try {
    cachedData = fs.readFileSync(path.join(here, CODE_CACHE_FILE));
  } catch {
    cachedData = undefined; // none built: compile as usual
  }
  const script = new vm.Script(M.wrap(source), { filename: file, cachedData });
  const mod = new Module(file);
  mod.filename = file;
  mod.paths = M._nodeModulePaths(path.dirname(file));
  M._cache[file] = mod;
  try {
    const wrapper = script.runInThisContext() as (exports: unknown, require: NodeJS.Require, module: Module, filename: string, dirname: string) => void;
    wrapper.call(mod.exports, mod.exports, createRequire(file), mod, file, path.dirname(file));
  } catch (err) {
    delete M._cache[file];
    throw err;
  }
  mod.loaded = true;
  const out = process.env[WRITE_CACHE_ENV];
  if (out) {
    process.once('exit', () => {
      // every command's module evaluated first, so the cache holds their compiled code too
      const commands = (mod.exports as LoadedCli).COMMANDS;
      for (const id of Object.keys(commands)) void commands[id];
      fs.writeFileSync(out, script.createCachedData());
    });
  }
  return mod.exports as LoadedCli;
}
