// Writing over a block device: volume create, volume export and dump never write over a
// device the kernel holds (mounted: exit 7, --force or not), nor over a file system or
// partition table without --force (exit 6), and volume create --force never writes over
// a volume another imgstream process holds (exit 7). Each refusal leaves the device byte
// for byte as it was. Needs root and a free loop device (as CI's machines have); mkfs.ext4
// and mount for the file system cases.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, runCli, sha256File, stderrLines } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { startServer } from '../nbd/support.js';

const root = tempDir('imgstream-device-guard-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (n: string) => path.join(root, n);
const src = at('src.vol');
let dev: string | null = null;

beforeAll(async () => {
  await setupOk(['volume', 'create', src, '--size', '1M'], { env });
  fs.writeFileSync(at('backing'), '');
  fs.truncateSync(at('backing'), 64 << 20);
  if (process.getuid?.() !== 0) return;
  const r = spawnSync('losetup', ['-f', '--show', at('backing')], { encoding: 'utf8' });
  if (r.status === 0) dev = r.stdout.trim();
});
afterAll(() => {
  if (fs.existsSync(at('mnt'))) spawnSync('umount', [at('mnt')]);
  if (dev) spawnSync('losetup', ['-d', dev]);
  fs.rmSync(root, { recursive: true, force: true });
});

/** `sameBytes`: the device must read as before (not while mounted: the kernel writes to it then). */
function refused(args: string[], code: number, message: RegExp, sameBytes = true): void {
  const before = sameBytes ? sha256File(dev!) : '';
  const r = runCli(args, { env });
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
  const lines = stderrLines(r);
  expect(lines, r.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(message);
  if (sameBytes) expect(sha256File(dev!), `${args.join(' ')} changed ${dev}`).toBe(before);
}

const hasMkfs = spawnSync('mkfs.ext4', ['-V']).status === 0;

describe('writing over a block device', () => {
  it('volume create --force is refused while another process holds the volume there', async (ctx) => {
    if (!dev) ctx.skip();
    await setupOk(['volume', 'create', dev!, '--size', '16M', '--force'], { env });
    await setupOk(['snapshot', 'create', dev!, 'keep'], { env });
    const server = await startServer(dev!, ['--socket', at('s.sock')], locks);
    try {
      refused(['volume', 'create', dev!, '--size', '4M', '--force'], 7, /volume is being served by imgstream process \d+/);
    } finally {
      await server.stop();
    }
    expect(cliOk(['snapshot', 'list', dev!], { env }).stdout).toMatch(/keep/);
  });

  it.skipIf(!hasMkfs)('a file system is written over only with --force, a mounted one never', async (ctx) => {
    if (!dev) ctx.skip();
    expect(spawnSync('mkfs.ext4', ['-q', '-F', dev!]).status).toBe(0);
    for (const [args, what] of [
      [['volume', 'create', dev!, '--size', '4M'], 'the new volume'],
      [['volume', 'export', src, '--to', dev!], 'the export'],
      [['dump', src, '--level', '0', '--to', dev!], 'the dump'],
    ] as const) {
      refused([...args], 6, new RegExp(`holds an ext4 file system, which ${what} would write over.*pass --force`));
    }
    fs.mkdirSync(at('mnt'));
    if (spawnSync('mount', [dev!, at('mnt')]).status !== 0) ctx.skip(); // no ext4 mounts here
    try {
      fs.writeFileSync(path.join(at('mnt'), 'kept'), 'still here');
      spawnSync('sync');
      for (const args of [
        ['volume', 'create', dev!, '--size', '4M', '--force'],
        ['volume', 'export', src, '--to', dev!, '--force'],
        ['dump', src, '--level', '0', '--to', dev!, '--force'],
      ]) refused(args, 7, /the device is in use \(mounted/, false);
      spawnSync('sync');
      expect(fs.readFileSync(path.join(at('mnt'), 'kept'), 'utf8')).toBe('still here');
    } finally {
      spawnSync('umount', [at('mnt')]);
      fs.rmdirSync(at('mnt'));
    }
    // the file system is whole: nothing of ours went onto it
    expect(spawnSync('fsck.ext4', ['-n', '-f', dev!]).status).toBe(0);
    cliOk(['volume', 'export', src, '--to', dev!, '--force'], { env });
    expect(spawnSync('blkid', ['-p', dev!]).status).toBe(2); // nothing left of the file system
    cliOk(['volume', 'export', src, '--to', dev!], { env }); // nothing to protect now
  });
});
