// How the executable loads the CLI (src/cli/load.ts, src/build/cli-bundle.ts): from the
// built bundle with its V8 code cache, which V8 must accept; with Node's heavier built-ins
// and every command but the one run left unloaded; and without a cache (another Node, other
// V8 flags) by compiling the bundle as usual.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';

const CLI_DIR = path.join(REPO_ROOT, 'dist', 'src', 'cli');

/** Runs a script in a fresh node process (an ES module, in dist/src/cli so its imports resolve) and returns its JSON output. */
function probe(script: string, args: string[] = []): unknown {
  const file = path.join(CLI_DIR, `probe-${process.pid}-${Math.random().toString(36).slice(2)}.mjs`);
  fs.writeFileSync(file, script);
  try {
    const r = spawnSync(process.execPath, [...args, file], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NODE_OPTIONS: '', NODE_ENV: '' } });
    expect(r.status, r.stderr).toBe(0);
    return JSON.parse(r.stdout.trim().split('\n').at(-1)!);
  } finally {
    fs.rmSync(file, { force: true });
  }
}

describe('the CLI bundle', () => {
  it('is pure ASCII and its code cache is accepted by this Node', () => {
    const bundle = fs.readFileSync(path.join(CLI_DIR, 'imgstream.cjs'));
    expect(bundle.findIndex((b) => b > 0x7f), 'a byte outside ASCII (the loader reads latin1)').toBe(-1);
    const out = probe(`
      import fs from 'node:fs'; import vm from 'node:vm'; import Module from 'node:module';
      const dir = ${JSON.stringify(CLI_DIR)};
      const script = new vm.Script(Module.wrap(fs.readFileSync(dir + '/imgstream.cjs', 'latin1')), { filename: dir + '/imgstream.cjs', cachedData: fs.readFileSync(dir + '/imgstream.cjs.cache') });
      console.log(JSON.stringify({ rejected: script.cachedDataRejected }));
    `);
    expect(out).toEqual({ rejected: false });
  });

  it('loads no heavy built-in and evaluates no command until one is asked for', () => {
    const out = probe(`
      import { loadCli } from './load.js';
      const loaded = (names) => names.filter((n) => process.moduleLoadList.includes('NativeModule ' + n));
      const heavy = ['crypto', 'tls', 'child_process', 'worker_threads', 'zlib', 'http', 'dgram'];
      const before = loaded(heavy);
      const cli = loadCli();
      const after = loaded(heavy);
      const ids = Object.keys(cli.COMMANDS);
      const command = cli.COMMANDS['volume:info'];
      console.log(JSON.stringify({ before, after, ids: ids.length, hasInfo: typeof command === 'function', again: loadCli() === cli }));
    `);
    const o = out as { before: string[]; after: string[]; ids: number; hasInfo: boolean; again: boolean };
    expect(o.after, 'heavy built-ins loaded with the bundle').toEqual(o.before);
    const commandFiles = fs.readdirSync(path.join(REPO_ROOT, 'dist', 'commands'), { recursive: true }).map(String).filter((f) => f.endsWith('.js') && !f.startsWith('_cli'));
    expect(o.ids, 'one entry per command module').toBe(commandFiles.length);
    expect(o.hasInfo).toBe(true);
    expect(o.again, 'a second load returns the same module').toBe(true);
  });

  it('loads without its code cache (another Node, other V8 flags), and with a cache V8 rejects', () => {
    const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-bundle-'));
    try {
      // the loader and the bundle alone (they need nothing else of dist/), with the packages the bundle leaves outside
      for (const f of ['load.js', 'index.js', 'imgstream.cjs']) fs.copyFileSync(path.join(CLI_DIR, f), path.join(copy, f));
      fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(copy, 'node_modules'));
      const run = (extra: string) =>
        probe(`
          ${extra}
          const { loadCli } = await import(${JSON.stringify(path.join(copy, 'load.js'))});
          const cli = loadCli();
          console.log(JSON.stringify({ exit: cli.EXIT_CODES.usage.exit, info: typeof cli.COMMANDS['volume:info'] }));
        `);
      expect(run('')).toEqual({ exit: 2, info: 'function' });
      fs.writeFileSync(path.join(copy, 'imgstream.cjs.cache'), Buffer.alloc(4096, 7));
      expect(run('')).toEqual({ exit: 2, info: 'function' });
    } finally {
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });
});
