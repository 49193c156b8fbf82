// Output paths that are symbolic links to nothing (ln -s nowhere/x l) are taken, as a file
// there is: export and dump refused them only when they existed, so the link was replaced
// by a regular file without --force; a restore read every stream and then failed at its
// final link into place ("appeared while restoring"), again on every rerun; a mirror update
// failed the same way (raw EEXIST) and left its side files. Each is refused up front now,
// exit 6, naming the link, with nothing read or written.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, runCli } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { dirEntries, expectOneLineError } from '../support/stream-cli.js';
import { volumeWithSnapshot } from '../support/in-process.js';

const root = tempDir('imgstream-dangling-');
const work = path.join(root, 'work');
const at = (n: string) => path.join(work, n);
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const vol = at('v.vol');

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
beforeAll(async () => {
  fs.mkdirSync(work, { recursive: true });
  await volumeWithSnapshot(vol, path.join(root, 'v.raw'), env);
  cliOk(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', path.join(root, 'd0')], { env });
});

/** `args` with a dangling link `name` as the output: refused, exit 6, and the directory as it was. */
function refusedOver(name: string, args: string[], pattern = /already exists: a symbolic link to nowhere\/x, which does not exist/) {
  const link = at(name);
  fs.symlinkSync('nowhere/x', link);
  const before = dirEntries(work);
  const r = runCli(args.map((a) => (a === 'LINK' ? link : a)), { env });
  expectOneLineError(r, `${args.join(' ')} over a dangling link`, 6, new RegExp(`${name}: ${pattern.source}`));
  expect(dirEntries(work), 'nothing left beside it').toEqual(before);
  expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
}

describe('an output path that is a dangling symbolic link', () => {
  it('volume export refuses it without --force, and replaces it with --force', () => {
    refusedOver('export-link', ['volume', 'export', vol, '--to', 'LINK']);
    expect(runCli(['volume', 'export', vol, '--to', at('export-link'), '--force'], { env }).code).toBe(0);
    expect(fs.lstatSync(at('export-link')).isFile()).toBe(true);
  });

  it('dump refuses it, taking no snapshot', () => {
    const snaps = () => runCli(['snapshot', 'list', vol], { env }).stdout;
    const before = snaps();
    refusedOver('dump-link', ['dump', vol, '--level', '0', '--to', 'LINK']);
    expect(snaps()).toEqual(before);
  });

  it('restore refuses it before reading a stream', () => {
    refusedOver('restore-link', ['restore', '--from', path.join(root, 'd0'), '--to', 'LINK']);
  });

  it('mirror update refuses it, leaving no side files', () => {
    refusedOver('mirror-link', ['mirror', 'update', vol, '--to', 'LINK']);
  });
});

describe('an output path that is a symbolic link to a file', () => {
  it('--force replaces the file it points to and keeps the link (volume export and dump), as a shell\'s > does', () => {
    fs.mkdirSync(at('images'));
    for (const [name, args] of [
      ['img', ['volume', 'export', `${vol}@s1`, '--to', 'LINK', '--force']],
      ['stream', ['dump', vol, '--level', '0', '--snapshot', 's1', '--to', 'LINK', '--force']],
    ] as Array<[string, string[]]>) {
      const target = at(`images/${name}.old`);
      fs.writeFileSync(target, 'old contents\n');
      const link = at(`latest-${name}`);
      fs.symlinkSync(`images/${name}.old`, link);
      cliOk(args.map((a) => (a === 'LINK' ? link : a)), { env });
      expect(fs.lstatSync(link).isSymbolicLink(), `${name}: the link kept`).toBe(true);
      expect(fs.readFileSync(target, 'latin1'), `${name}: the file behind it replaced`).not.toBe('old contents\n');
      expect(fs.readdirSync(at('images')), `${name}: nothing left beside it`).toContain(`${name}.old`);
    }
    expect(fs.readFileSync(at('images/img.old')).equals(fs.readFileSync(path.join(root, 'v.raw')))).toBe(true);
    expect(runCli(['verify', at('latest-stream')], { env }).code).toBe(0);
  });
});
