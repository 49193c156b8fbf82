// imgstream demo, the front door: as a user runs it (a real process), it shows the main
// jobs end to end and checks them; and it fails when a result differs (in process, a
// mirror update that does nothing leaves the mirror behind the changed disk).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { cliJson, runCli } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { expectOneLineError } from '../support/stream-cli.js';
import { CorruptError } from '../../src/core/errors.js';
import { demoFileNames } from '../../src/demo/demo.js';

const root = tempDir('imgstream-demo-test-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'user-catalog.json'), XDG_STATE_HOME: path.join(root, 'state') };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

// the second mirror update does nothing: the demo must notice
let sabotage = false;
vi.mock('../../src/demo/jobs.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../../src/demo/jobs.js')>();
  let first: Awaited<ReturnType<typeof real.demoMirror>> | undefined;
  return {
    ...real,
    demoMirror: async (...args: Parameters<typeof real.demoMirror>) => {
      if (sabotage && first) return first;
      return (first = await real.demoMirror(...args));
    },
  };
});

describe('imgstream demo', () => {
  it('dumps levels 0, 1, 2, verifies, restores and mirrors, all byte-identical, leaving the user\'s catalog and state alone', () => {
    const dir = path.join(root, 'run');
    const r = cliJson<{
      ok: boolean;
      steps: Array<{ step: string; detail: string }>;
      dumps: Array<{ level: number; expression: string; blocks: number }>;
      restored: Array<{ snapshot: string; identical: boolean }>;
      mirror: Array<{ mode: string; blocks: number; identical: boolean }>;
      verified: Array<{ identical: boolean }>;
    }>(['demo', '--dir', dir, '--size', '16M'], { env, timeoutMs: 60_000 });
    expect(r.ok).toBe(true);
    expect(r.verified.every((v) => v.identical)).toBe(true);
    expect(r.dumps.map((d) => [d.level, d.expression])).toEqual([[0, 'monday'], [1, 'tuesday - monday'], [2, 'wednesday - tuesday']]);
    expect(r.dumps[2].blocks).toBeLessThan(r.dumps[1].blocks);
    expect(r.restored).toEqual(['monday', 'tuesday', 'wednesday'].map((snapshot) => ({ snapshot, identical: true })));
    expect(r.mirror.map((m) => [m.mode, m.identical])).toEqual([['full', true], ['moa', true]]);
    expect(r.mirror[1].blocks).toBeLessThan(r.mirror[0].blocks / 10);
    expect(r.steps.map((s) => s.step)).toEqual(expect.arrayContaining(['dump', 'verify', 'restore', 'mirror']));
    // its own catalog and mirror state, in its directory
    expect(fs.existsSync(path.join(dir, 'catalog.json'))).toBe(true);
    expect(fs.existsSync(env.IMGSTREAM_CATALOG)).toBe(false);
    expect(fs.existsSync(env.XDG_STATE_HOME)).toBe(false);
  }, 60_000);

  it('refuses a --size too small for its jobs, naming the least, before making anything (not "volume is full")', () => {
    fs.mkdirSync(path.join(root, 'tmp-small'));
    const r = runCli(['demo', '--size', '4M', '--block-size', '1M'], { env: { ...env, TMPDIR: path.join(root, 'tmp-small') }, timeoutMs: 60_000 });
    expectOneLineError(r, 'demo of 4 blocks', 4, /--size 4M holds 4 blocks of 1\.00 MiB: the demo needs at least 64 \(give --size 64M or more\)$/);
    expect(runCli(['demo', '--size', '16K'], { env: { ...env, TMPDIR: path.join(root, 'tmp-small') }, timeoutMs: 60_000 }).stderr).toMatch(/give --size 256K or more/);
    expect(fs.readdirSync(path.join(root, 'tmp-small'))).toEqual([]);
  }, 60_000);

  it('refuses a --dir holding any file it makes, before writing anything, and an empty --dir', () => {
    for (const name of ['monday.raw', 'wednesday.raw', 'thursday.raw', 'tuesday.exported.raw', 'demo.vol', 'monday.l0', 'catalog.json']) {
      const dir = path.join(root, `mine-${name}`);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, name), 'mine\n');
      const r = runCli(['demo', '--dir', dir, '--size', '256K'], { env, timeoutMs: 60_000 });
      expectOneLineError(r, `demo over ${name}`, 6, new RegExp(`${name.replace('.', '\\.')}: already exists .*\\(choose another --dir or remove it\\)$`));
      expect(r.stderr).not.toMatch(/--force/);
      // the user's file as it was, and nothing of the demo's beside it
      expect(fs.readFileSync(path.join(dir, name), 'utf8')).toBe('mine\n');
      expect(fs.readdirSync(dir)).toEqual([name]);
    }
    // a dangling link of the demo's name is a file it would write through
    const linked = path.join(root, 'mine-link');
    fs.mkdirSync(linked);
    fs.symlinkSync('nowhere/x', path.join(linked, 'mirror.vol'));
    expectOneLineError(runCli(['demo', '--dir', linked, '--size', '256K'], { env }), 'demo over a dangling link', 6, /mirror\.vol: already exists/);
    expect(fs.readdirSync(linked)).toEqual(['mirror.vol']);
    expect(demoFileNames()).toEqual(expect.arrayContaining(['monday.raw', 'tuesday.raw', 'wednesday.raw', 'wednesday.l2', 'mirror-state.json']));
    // --dir '' would be the current directory
    const cwd = path.join(root, 'cwd');
    fs.mkdirSync(cwd);
    fs.writeFileSync(path.join(cwd, 'monday.raw'), 'mine\n');
    expectOneLineError(runCli(['demo', '--dir', '', '--size', '256K'], { env, cwd }), 'demo --dir ""', 4, /the demo directory is an empty path/);
    expect(fs.readdirSync(cwd)).toEqual(['monday.raw']);
  }, 60_000);

  it('is quiet on a pipe and removes its temporary directory', () => {
    fs.mkdirSync(path.join(root, 'tmp'));
    const r = runCli(['demo', '--size', '8M'], { env: { ...env, TMPDIR: path.join(root, 'tmp') }, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.trimEnd().split('\n').at(-1)).toMatch(/^demo passed: .*restored.*mirror/);
    expect(fs.readdirSync(path.join(root, 'tmp'))).toEqual([]);
  }, 60_000);

  it('fails with the corrupt error when a result differs (a mirror update that did nothing)', async () => {
    sabotage = true;
    const { runDemo } = await import('../../src/demo/demo.js');
    const err = await runDemo(path.join(root, 'sabotaged'), { size: 4 << 20, blockSize: 4096 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CorruptError);
    expect((err as CorruptError).message).toMatch(/demo failed: moa transfer .* its disk DIFFERS|demo failed: .*mirror.* DIFFERS/);
    expect((err as CorruptError).exitCode).toBe(9);
  }, 60_000);
});
