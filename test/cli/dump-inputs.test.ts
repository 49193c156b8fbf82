// A dump never writes over its own inputs, --force or not: `dump --force --to KEYFILE
// --encrypt --key-file KEYFILE` replaced the only copy of the key with a stream nobody
// could read any more. The key file, the passphrase file, the catalog and the volume are
// compared as files (a hard or symbolic link, another spelling, stdout appended to one)
// and the dump is refused with exit 4 before it takes its snapshot or writes anything.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, cliJson, cliOk, hashTree, runCli, type CliResult } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { expectOneLineError } from '../support/stream-cli.js';
import { inProcessJson, volumeWithSnapshot } from '../support/in-process.js';

const root = tempDir('imgstream-dump-inputs-');
const work = path.join(root, 'work'); // hashed around every refused dump
const locks = path.join(root, 'locks');
const at = (n: string) => path.join(work, n);
const catalog = at('catalog.json');
const env = { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_CATALOG: catalog };
const vol = at('v.vol');

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  fs.mkdirSync(work, { recursive: true });
  await volumeWithSnapshot(vol, path.join(root, 'v.raw'), env);
  fs.writeFileSync(at('backup.key'), `${'ab'.repeat(32)}\n`, { mode: 0o600 });
  fs.writeFileSync(at('pass.txt'), 'a passphrase long enough\n', { mode: 0o600 });
  fs.linkSync(at('backup.key'), at('key-hardlink'));
  fs.symlinkSync('pass.txt', at('pass-symlink'));
  // the catalog exists: one complete dump recorded
  cliOk(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', path.join(root, 'v.l0')], { env });
});

/** The volume's snapshots, listed in this process (a check, not what the tests are about: in-process.ts). */
const snapshots = async (): Promise<string[]> => (await inProcessJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol], { env })).snapshots.map((s) => s.name);

/** A dump that would take a snapshot, refused (exit 4) naming `pattern`, with nothing changed. */
async function refused(what: string, run: () => CliResult, pattern: RegExp): Promise<void> {
  const before = hashTree(work);
  const snaps = await snapshots();
  expectOneLineError(run(), what, 4, pattern);
  expect(await snapshots(), `${what}: no snapshot taken`).toEqual(snaps);
  expect(hashTree(work), `${what}: nothing changed`).toEqual(before);
}

const dump = (...args: string[]) => () => runCli(['dump', vol, '--level', '1', '--force', ...args], { env, timeoutMs: 30_000 });

describe('dump --to one of its own inputs', () => {
  it('its key file, as given or through a hard link', async () => {
    await refused('--to KEYFILE', dump('--encrypt', '--key-file', at('backup.key'), '--to', at('backup.key')), /backup\.key: is the key file \(--key-file\); a dump never writes over its own inputs/);
    await refused('--to a hard link of KEYFILE', dump('--encrypt', '--key-file', at('backup.key'), '--to', at('key-hardlink')), /key-hardlink: is the key file \(--key-file\) \(.*backup\.key\)/);
  });

  it('its passphrase file, as given or through a symbolic link', async () => {
    await refused('--to PASSFILE', dump('--encrypt', '--passphrase-file', at('pass.txt'), '--to', at('pass.txt')), /pass\.txt: is the passphrase file \(--passphrase-file\)/);
    await refused('--to a symlink of PASSFILE', dump('--encrypt', '--passphrase-file', at('pass.txt'), '--to', at('pass-symlink')), /pass-symlink: is the passphrase file/);
  });

  it('its catalog, existing or still to be created, and the catalog as stdout', async () => {
    await refused('--to CATALOG', dump('--to', `${work}/./catalog.json`), /catalog\.json: is the catalog/);
    await refused('--to a catalog not created yet', dump('--catalog', at('new-catalog.json'), '--to', at('new-catalog.json')), /new-catalog\.json: is the catalog/);
    // imgstream dump ... --to - >> CATALOG
    await refused(
      '--to - appended to the catalog',
      () => {
        const fd = fs.openSync(catalog, 'a');
        try {
          const r = spawnSync(process.execPath, [CLI_BIN, 'dump', vol, '--level', '1', '--to', '-'], { env: { ...process.env, ...env }, stdio: ['ignore', fd, 'pipe'], timeout: 30_000 });
          return { code: r.status, signal: r.signal, stdout: '', stderr: r.stderr.toString(), stdoutBytes: Buffer.alloc(0) };
        } finally {
          fs.closeSync(fd);
        }
      },
      /^imgstream: stdout: is the catalog/,
    );
  });

  it('the volume it dumps, spelled another way', async () => {
    await refused('--to the volume', dump('--to', `${work}/./v.vol`), /is the volume being dumped|is an imgstream volume/);
  });

  it('with --multiplex too', async () => {
    await refused('--multiplex --to tape:KEYFILE', dump('--multiplex', '--encrypt', '--key-file', at('backup.key'), '--to', `tape:${at('backup.key')}`), /backup\.key: is the key file/);
  });

  it('another file with the same key is dumped as always', () => {
    const key = fs.readFileSync(at('backup.key'));
    const r = cliJson<{ level: number }>(['dump', vol, '--level', '1', '--encrypt', '--key-file', at('backup.key'), '--to', path.join(root, 'v.l1')], { env });
    expect(r.level).toBe(1);
    expect(fs.readFileSync(at('backup.key'))).toEqual(key);
  });
});
