// A dump spanning tapes publishes its continuation tape files first and its first tape
// file last. Killed in between (kill -9 at the crash point tape-publish, as a kill placed
// with strace on the link lands), it left continuations whose earlier tapes held only
// their unfinished partial files, and the same dump run again was refused ("tape t3
// already holds 1 tape file(s)") until the user removed them by hand. Now the rerun
// removes them, one line each on stderr, and completes: a single stream and a
// multiplexed dump. A tape holding a tape file of a complete dump is refused as before:
// the same set again, the set whose first tape file was published as the kill landed
// (its partial name still linked), and a tape of a complete set given after others.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { incompressibleImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { runBundled } from '../support/bundled-cli.js';
import { runCli, stderrLines } from '../support/cli.js';
import { expectOneLineError } from '../support/stream-cli.js';

const BS = 4096;
const BLOCKS = 512; // 2 MiB logical disks, 60% random: a stream of about 1.2 MiB
const root = tempDir('imgstream-tape-orphans-');
const catalog = path.join(root, 'catalog.json');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: catalog };
const at = (f: string) => path.join(root, f);
const [A, B] = ['a', 'b'].map((n) => at(`${n}.vol`));

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Random (incompressible) blocks in 60% of the disk: each stream takes a few parts. */
const image = (seed: number): Buffer => incompressibleImage(BLOCKS, BS, seed);

beforeAll(async () => {
  for (const [vol, seed] of [[A, 1], [B, 2]] as const) {
    await setupOk(['volume', 'create', vol, '--size', `${(BLOCKS * BS) >> 20}M`, '-q'], { env });
    fs.writeFileSync(`${vol}.raw`, image(seed));
    await setupOk(['volume', 'import', vol, '--from', `${vol}.raw`, '-q'], { env });
    await setupOk(['snapshot', 'create', vol, 's1', '-q'], { env });
  }
});

/** What each tape directory holds, names sorted. */
const contents = (tapes: string[]): string[][] => tapes.map((t) => (fs.existsSync(t) ? fs.readdirSync(t).sort() : []));
const recorded = (): number => (fs.existsSync(catalog) ? (JSON.parse(fs.readFileSync(catalog, 'utf8')) as { dumps: unknown[] }).dumps.length : 0);
/** The pid of a process that has ended: what a killed dump's partial files are named after. */
const deadPid = (): number => spawnSync(process.execPath, ['-e', '0']).pid!;

const single = (tapes: string[], size = '500K') => ['dump', A, '--level', '0', '--snapshot', 's1', '--to', `tape:${tapes.join(',')}`, '--tape-size', size, '--new-tape'];
const multiplexed = (tapes: string[]) => ['dump', A, B, '--multiplex', '--level', '0', '--snapshot', 's1', '--to', `tape:${tapes.join(',')}`, '--tape-size', '1M', '--new-tape'];

describe('a spanning dump killed while it published its tape files', () => {
  for (const { what, args, killAt, orphans } of [
    { what: 'a single stream killed before its second tape got its name', args: single, killAt: 'u2', orphans: ['u3'] },
    { what: 'a multiplexed dump killed before its first tape got its name', args: multiplexed, killAt: 'm1', orphans: ['m2', 'm3'] },
  ]) {
    it(`${what}: the rerun removes the continuations left behind, saying so, and completes`, async () => {
      const names = killAt.startsWith('u') ? ['u1', 'u2', 'u3'] : ['m1', 'm2', 'm3'];
      const tapes = names.map(at);
      const killed = runCli(args(tapes), { env: { ...env, IMGSTREAM_CRASH_AT: `tape-publish:${killAt}` } });
      expect(killed.signal, killed.stderr).toBe('SIGKILL');
      // the tapes from the killed one on hold its partial files, those after it published continuations
      const left = contents(tapes);
      for (const [i, t] of names.entries()) expect(left[i], t).toEqual(orphans.includes(t) ? ['file0001.tar'] : [expect.stringMatching(/^\.file0001\.tar\.partial-\d+$/)]);
      const before = recorded();
      const r = await runBundled(args(tapes), { env });
      expect(r.code, r.stderr).toBe(0);
      const lines = stderrLines(r);
      expect(lines, r.stderr).toHaveLength(orphans.length);
      for (const [i, t] of orphans.entries()) {
        expect(lines[i]).toMatch(new RegExp(`^tape \\S+/${t}: removed file0001\\.tar \\(tape ${names.indexOf(t) + 1} of ${args === multiplexed ? 'multiplexed ' : ''}dump [0-9a-f-]{36}\\), left by a dump killed before it published its earlier tapes$`));
      }
      expect(contents(tapes)).toEqual(names.map(() => ['file0001.tar']));
      expect(recorded()).toBe(before + (args === multiplexed ? 2 : 1));
      const v = await runBundled(['verify', `tape:${tapes.join(',')}`], { env });
      expect(v.code, v.stderr).toBe(0);
      expect(v.stdout).toMatch(args === multiplexed ? /2 stream\(s\) verified/ : /: ok$/m);
    });
  }
});

describe('a tape holding a tape file of a complete dump', () => {
  const tapes = ['c1', 'c2', 'c3'].map(at);
  let files: Record<string, string> = {};

  beforeAll(async () => {
    const r = await runBundled(single(tapes), { env });
    expect(r.code, r.stderr).toBe(0);
    expect(contents(tapes)).toEqual(tapes.map(() => ['file0001.tar']));
    files = Object.fromEntries(tapes.map((t) => [t, fs.readFileSync(path.join(t, 'file0001.tar')).toString('base64')]));
  });

  const unchanged = () => {
    for (const t of tapes) expect(fs.readFileSync(path.join(t, 'file0001.tar')).toString('base64'), t).toBe(files[t]);
  };

  // the dumps after it are given tapes of twice the size: the first has room for their first tape file
  it('the same set again: refused as before, nothing removed', async () => {
    const r = await runBundled(single(tapes, '1M'), { env });
    expectOneLineError(r, 'a continuation onto a tape of a complete dump', 4, /tape \S+c2 already holds 1 tape file\(s\): the dump continued from tape \S+c1 needs an empty tape/);
    unchanged();
    expect(contents(tapes)).toEqual(tapes.map(() => ['file0001.tar']));
  });

  it('killed as it gave its first tape file its name (its partial name still linked): complete, refused as before', async () => {
    const twin = path.join(tapes[0], `.file0001.tar.partial-${deadPid()}`);
    fs.linkSync(path.join(tapes[0], 'file0001.tar'), twin);
    const r = await runBundled(single(tapes, '1M'), { env });
    expectOneLineError(r, 'a continuation onto a tape of a dump completed as the kill landed', 4, /tape \S+c2 already holds 1 tape file\(s\)/);
    unchanged();
    expect(fs.existsSync(twin), 'the stale name goes, the tape file stays').toBe(false);
  });

  it('its last tape given after tapes of another set, the one before holding a killed dump\'s partial file: refused as before', async () => {
    const others = ['o1', 'o2'].map(at);
    fs.mkdirSync(others[1]);
    // a killed dump's unfinished tape file, but not the one the tape after it continues
    fs.copyFileSync(path.join(tapes[0], 'file0001.tar'), path.join(others[1], `.file0001.tar.partial-${deadPid()}`));
    const r = await runBundled(single([...others, tapes[2]]), { env });
    expectOneLineError(r, 'a continuation onto the last tape of a complete set', 4, /tape \S+c3 already holds 1 tape file\(s\): the dump continued from tape \S+o2 needs an empty tape/);
    unchanged();
  });
});
