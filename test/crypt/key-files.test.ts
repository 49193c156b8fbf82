// Key and passphrase files as users give them, through the built CLI: one group or
// others may read is refused like the peer token (exit 4, naming the file and its mode,
// hint chmod 600), by dump before it takes a snapshot or writes, and by restore and
// verify before the target appears; a device or a huge file given by mistake
// (/dev/zero) is refused at once instead of being read into memory without end; a key
// or passphrase on a pipe (/dev/stdin, <(...)) works.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/images.js';
import { volumeWithSnapshot } from '../support/in-process.js';
import { cliWords, dirEntries, dump, expectOneLineError, sh, shellQuote, snapshotNames, refused } from '../support/stream-cli.js';

const root = tempDir('imgstream-key-files-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 30_000 };
const at = (n: string) => path.join(root, n);
const vol = at('v.vol');
const key = at('backup.key');
const pass = at('pass.txt');

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  await volumeWithSnapshot(vol, at('v.raw'), env);
  fs.writeFileSync(key, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  fs.writeFileSync(pass, 'correct horse battery staple\n', { mode: 0o600 });
  dump(vol, 0, 's1', at('key.l0'), at('catalog.json'), ['--encrypt', '--key-file', key], o);
  dump(vol, 0, 's1', at('pass.l0'), at('catalog.pass.json'), ['--encrypt', '--passphrase-file', pass], o);
});

describe('key and passphrase files', () => {
  it('one group or others may read is refused everywhere, changing nothing', async () => {
    for (const [name, mode] of [['key-644', 0o644], ['key-640', 0o640], ['key-604', 0o604]] as const) {
      fs.copyFileSync(key, at(name));
      fs.chmodSync(at(name), mode);
    }
    fs.copyFileSync(pass, at('pass-644'));
    fs.chmodSync(at('pass-644'), 0o644);
    const before = dirEntries(root);
    const modeOf = (n: string) => new RegExp(`${n}: group or others may read this (key|passphrase) file \\(mode 0${(fs.statSync(at(n)).mode & 0o777).toString(8)}\\) \\(run: chmod 600 .*${n}\\)`);
    for (const n of ['key-644', 'key-640', 'key-604']) {
      expectOneLineError(await refused(['dump', vol, '--level', '1', '--to', at('new.l1'), '--encrypt', '--key-file', at(n)], o), `dump, ${n}`, 4, modeOf(n));
      expectOneLineError(await refused(['restore', '--from', at('key.l0'), '--to', at('new.vol'), '--key-file', at(n)], o), `restore, ${n}`, 4, modeOf(n));
      expectOneLineError(await refused(['verify', at('key.l0'), '--key-file', at(n)], o), `verify, ${n}`, 4, modeOf(n));
    }
    expectOneLineError(await refused(['dump', vol, '--level', '1', '--to', at('new.l1'), '--encrypt', '--passphrase-file', at('pass-644')], o), 'dump, pass-644', 4, modeOf('pass-644'));
    expectOneLineError(await refused(['restore', '--from', at('pass.l0'), '--to', at('new.vol'), '--passphrase-file', at('pass-644')], o), 'restore, pass-644', 4, modeOf('pass-644'));
    expect(dirEntries(root)).toEqual(before);
    expect(await snapshotNames(vol, o)).toEqual(['s1']);
  });

  it('a device or a file far too large is refused at once, not read without end', async () => {
    expectOneLineError(await refused(['verify', at('key.l0'), '--key-file', '/dev/zero'], o), 'key file /dev/zero', 4, /\/dev\/zero: not a key file \(it holds more than 65536 bytes/);
    expectOneLineError(await refused(['verify', at('pass.l0'), '--passphrase-file', '/dev/zero'], o), 'passphrase file /dev/zero', 4, /\/dev\/zero: not a passphrase file \(its first line is longer than 65536 bytes\)/);
    fs.writeFileSync(at('large.key'), Buffer.alloc(1 << 20, 0x61), { mode: 0o600 });
    expectOneLineError(await refused(['verify', at('key.l0'), '--key-file', at('large.key')], o), 'a large key file', 4, /large\.key: not a key file/);
  });

  it('a key or passphrase on a pipe works', async () => {
    for (const [flag, file, stream] of [['--key-file', key, 'key.l0'], ['--passphrase-file', pass, 'pass.l0']]) {
      const r = await sh(`cat ${shellQuote(file)} | ${cliWords(['verify', at(stream), flag, '/dev/stdin'])}`, o);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/1 stream\(s\) verified/);
    }
  });
});
