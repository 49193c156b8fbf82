// A named pipe given where a volume (or a mirror destination) must be: opening it read-only
// waited for a writer forever (volume info, check, snapshot list, image, export, mirror
// status; mirror update to one and protect from one ignored SIGTERM and SIGINT, and mirror
// update held its source's lock meanwhile); read-write, the first read failed with a raw
// ESPIPE (snapshot create and delete, volume import, mirror update and break). Each is
// refused on a stat before any open: exit 5, one line. A pipe as a stream or image source
// (volume import --from, restore --from) is read as before. Every refusal names the pipe as
// such (mirror break said "not an imgstream volume", protect status "is a file").
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, runCli } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { cliWords, dirEntries, expectOneLineError, sh, shellQuote } from '../support/stream-cli.js';
import { volumeWithSnapshot } from '../support/in-process.js';

const root = tempDir('imgstream-fifo-volume-');
const work = path.join(root, 'work');
const at = (n: string) => path.join(work, n);
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_CATALOG: path.join(root, 'catalog.json'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const vol = at('v.vol');
const fifo = at('f');

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
beforeAll(async () => {
  fs.mkdirSync(work, { recursive: true });
  await volumeWithSnapshot(vol, path.join(root, 'v.raw'), env);
  cliOk(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', path.join(root, 'v.l0')], { env });
  expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
});

const refusals: string[][] = [
  ['volume', 'info', 'F'],
  ['volume', 'check', 'F'],
  ['snapshot', 'list', 'F'],
  ['image', 'F', 's1'],
  ['volume', 'export', 'F', '--to', path.join(root, 'out.raw')],
  ['mirror', 'status', 'F'],
  ['snapshot', 'create', 'F', 'x'],
  ['snapshot', 'delete', 'F', 'x'],
  ['volume', 'import', 'F', '--from', path.join(root, 'v.raw')],
  ['mirror', 'update', 'F', '--to', at('m.vol')],
  ['mirror', 'update', vol, '--to', 'F'],
  ['mirror', 'break', 'F'],
  ['mirror', 'abandon', vol, '--to', 'F'],
  ['protect', 'F', '--to', at('pd'), '--once'],
  ['protect', 'status', 'F'],
];

describe('a named pipe given as a volume', () => {
  for (const args of refusals) {
    const words = args.map((a) => (a === 'F' ? fifo : a));
    it(`${args.join(' ')}: exit 5 at once, one line, nothing left, no lock held`, () => {
      const before = dirEntries(work);
      const r = runCli(words, { env, timeoutMs: 15_000 });
      // named for what it is, as every command names it (mirror break said "not an imgstream volume", protect status "is a file")
      expectOneLineError(r, args.join(' '), 5, args[1] === 'status' && args[0] === 'protect' ? /f: is a named pipe, not a protection destination/ : /f: is a named pipe, not a volume/);
      expect(r.stderr).not.toMatch(/ESPIPE|EEXIST/);
      expect(dirEntries(work), 'nothing written beside it').toEqual(before);
      expect(fs.existsSync(locks) ? fs.readdirSync(locks) : [], 'no lock left').toEqual([]);
    });
  }
});

describe('a named pipe as a source', () => {
  it('volume import --from and restore --from still read one', async () => {
    const imported = await sh(`cat ${shellQuote(path.join(root, 'v.raw'))} > ${shellQuote(fifo)} & ${cliWords(['volume', 'import', vol, '--from', fifo])}`, { env, timeoutMs: 30_000 });
    expect(imported.code, imported.stderr).toBe(0);
    const restored = await sh(`cat ${shellQuote(path.join(root, 'v.l0'))} > ${shellQuote(fifo)} & ${cliWords(['restore', '--from', fifo, '--to', at('r.vol')])}`, { env, timeoutMs: 30_000 });
    expect(restored.code, restored.stderr).toBe(0);
    expect(runCli(['snapshot', 'list', at('r.vol')], { env }).stdout).toMatch(/s1/);
  });
});
