// Protection destinations on file systems with limits.
//
// One that fills up (a backup disk, a quota): the shipper once exited 10 at the first
// interval that did not fit, and protection stopped until someone restarted it. It now
// waits as for a link that is down: it says the destination is full (a `waiting` event),
// keeps trying with a growing pause, and the server keeps journaling; once space is freed
// it catches up, and every point is exact. On a real file system that fills: a tmpfs of
// 24 MiB, grown when the test frees space. The same for a peer daemon whose root is on it.
//
// One whose largest file is smaller than the base's room for four times the disk (ext4
// holds 16 TiB: a disk over ~4 TiB): the seed once failed with "the file system cannot
// hold a file" and a hint about a flag protect does not have. The base now takes the
// largest file the file system holds (keeping fewer snapshots); one that cannot hold the
// disk once over is refused in one line naming the limit. On ext2 with 1 KiB blocks
// (files up to 16 GiB), loop-mounted. `volume create` without --volume-size does the same
// (it once failed for any disk over 8 TiB on ext4, its default being twice the disk).
import fs from 'node:fs';
import { execFileSync, spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { qemuIo, run, startServer } from '../nbd/support.js';
import { CLI_BIN, finished, listeningPort } from '../support/cli.js';
import { makeToken } from '../peer/support.js';
import { inProcessOk, setupOk } from '../support/in-process.js';
import { startProtect, type RunningProtect } from '../support/protect-cli.js';
import { largestFileIn } from '../../src/fs/largest-file.js';

const missing = journalTestMissing();
const { root, locks, at, env } = journalTestDir('imgstream-dest-full-');
const mnt = at('small');
fs.mkdirSync(mnt);
/** A file system that fills: mounting a tmpfs needs root (CI runs as root). */
let mounted = false;
try {
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24M', 'tmpfs', mnt], { stdio: 'ignore' });
  mounted = true;
} catch {
  // not root, or no mount: said in the suite's name
}
afterAll(() => {
  if (mounted) execFileSync('umount', ['-l', mnt], { stdio: 'ignore' });
});
const grow = () => execFileSync('mount', ['-o', 'remount,size=256M', mnt]);
/** ext2 with 1 KiB blocks, loop-mounted: files up to 16 GiB. */
const ext2 = at('ext2');
fs.mkdirSync(ext2);
let ext2Mounted = false;
if (mounted) {
  try {
    execFileSync('truncate', ['-s', '64M', at('ext2.img')]);
    execFileSync('mkfs.ext2', ['-q', '-b', '1024', at('ext2.img')], { stdio: 'ignore' });
    execFileSync('mount', ['-o', 'loop', at('ext2.img'), ext2], { stdio: 'ignore' });
    ext2Mounted = true;
  } catch {
    // no loop device or no mkfs.ext2: said in the test's name
  }
}
afterAll(() => {
  if (ext2Mounted) execFileSync('umount', ['-l', ext2], { stdio: 'ignore' });
});
const shrink = () => execFileSync('mount', ['-o', 'remount,size=24M', mnt]);
const skip = missing.length > 0 || !mounted;
const why = missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : !mounted ? ' (skipped: mounting a tmpfs to fill needs root)' : '';

/** Writes 10 MiB (fits), then 24 MiB more (does not); the shipper says it waits, and stays. */
async function fill(uri: string, shipper: RunningProtect): Promise<void> {
  await shipper.waitFor((e) => e.event === 'seed', 30_000);
  await qemuIo(uri, ['write -P 0x01 0 10M', 'flush']);
  await shipper.waitFor((e) => e.event === 'interval' && Number(e.blocks) === 2560, 30_000);
  await qemuIo(uri, ['write -P 0x02 10M 24M', 'flush']);
  const waiting = await shipper.waitFor((e) => e.event === 'waiting' && /is full/.test(String(e.reason)), 30_000);
  expect(String(waiting.reason)).toMatch(/no space left on the device while .*: free space there, or shorten --keep; retrying in \d+ s/);
  // the server takes writes meanwhile
  await qemuIo(uri, ['write -P 0x03 40M 64k', 'flush']);
  await new Promise((r) => setTimeout(r, 1500));
  expect(shipper.child.exitCode, 'the shipper waits, it does not exit').toBeNull();
}

async function expectExact(vol: string, dest: string, name: string): Promise<void> {
  await inProcessOk(['volume', 'export', vol, '--to', at(`${name}-src.img`)], { env });
  await inProcessOk(['volume', 'export', dest, '--as-of', 'latest', '--to', at(`${name}-dst.img`)], { env });
  expect(fs.readFileSync(at(`${name}-dst.img`)).equals(fs.readFileSync(at(`${name}-src.img`)))).toBe(true);
}

describe.skipIf(skip)(`a protection destination on a file system with limits${why}`, () => {
  it('is waited for, saying so, and caught up with once space is freed: a directory, then a peer daemon', async () => {
    const vol = at('f.vol');
    await setupOk(['volume', 'create', vol, '--size', '64M'], { env });
    const server = await startServer(vol, ['--socket', at('f.sock'), '--journal'], locks);
    try {
      const dest = `${mnt}/f.cdp`;
      let shipper = startProtect(vol, dest, ['--interval', '500ms'], env);
      try {
        await fill(server.info.uri, shipper);
        expect(fs.readdirSync(`${dest}/intervals`).filter((f) => f.startsWith('.')), 'no partial interval left behind').toEqual([]);
        grow();
        const t = Date.now();
        await shipper.waitCovered(t, 60_000);
        expect((await shipper.stop()).code).toBe(0);
      } finally {
        await shipper.kill9();
      }
      await server.stop();
      await expectExact(vol, dest, 'local');

      // a peer daemon whose root fills: its error comes over the wire, and is waited for the same
      fs.rmSync(dest, { recursive: true });
      shrink();
      const token = makeToken(root, 'f-token');
      const daemon = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', mnt, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
      const done = finished(daemon, 170_000);
      const vol2 = at('g.vol');
      await setupOk(['volume', 'create', vol2, '--size', '64M'], { env });
      const server2 = await startServer(vol2, ['--socket', at('g.sock'), '--journal'], locks);
      try {
        const url = `peer://127.0.0.1:${await listeningPort(daemon, done)}/g.cdp`;
        shipper = startProtect(vol2, url, ['--interval', '500ms', '--token-file', token, '--plain'], env);
        try {
          await fill(server2.info.uri, shipper);
          grow();
          await shipper.waitCovered(Date.now(), 60_000);
          expect((await shipper.stop()).code).toBe(0);
        } finally {
          await shipper.kill9();
        }
        await server2.stop();
        await expectExact(vol2, `${mnt}/g.cdp`, 'peer');
      } finally {
        daemon.kill('SIGTERM');
        await done;
        await server2.stop();
      }
    } finally {
      await server.stop();
    }
  }, 180_000);

  it.skipIf(!ext2Mounted)(`takes a base as large as the file system holds, and refuses one that cannot hold the disk${ext2Mounted ? '' : ' (skipped: no loop-mounted ext2)'}`, async () => {
    const vol = at('b.vol');
    await setupOk(['volume', 'create', vol, '--size', '4G'], { env });
    const server = await startServer(vol, ['--socket', at('b.sock'), '--journal'], locks);
    try {
      await qemuIo(server.info.uri, ['write -P 0x21 0 2M', 'write -P 0x22 3G 1M', 'flush']);
      const r = await run(process.execPath, [CLI_BIN, 'protect', vol, '--to', `${ext2}/b.cdp`, '--once'], { env });
      expect(r.code, r.stderr).toBe(0);
      // the base: as large as the file system holds (within its metadata's granularity), which is less than 4 times the disk
      const base = fs.statSync(`${ext2}/b.cdp/base.vol`).size;
      const largest = largestFileIn(ext2, 2 ** 40);
      expect(largest).toBeLessThan(4 * 4 * 2 ** 30 + (1 << 30));
      expect(base).toBeLessThanOrEqual(largest);
      expect(base).toBeGreaterThan(largest - (64 << 20));
      await qemuIo(server.info.uri, ['write -P 0x23 1G 64k', 'flush']);
      expect((await run(process.execPath, [CLI_BIN, 'protect', vol, '--to', `${ext2}/b.cdp`, '--once'], { env })).code).toBe(0);
      await server.stop();
      // the disk as of the newest point: what was written where it was, holes elsewhere
      await inProcessOk(['volume', 'export', `${ext2}/b.cdp`, '--as-of', 'latest', '--to', at('b-dst.img')], { env });
      const fd = fs.openSync(at('b-dst.img'), 'r');
      try {
        const fill = (at: number, n: number) => {
          const b = Buffer.alloc(n);
          fs.readSync(fd, b, 0, n, at);
          return [...new Set(b)];
        };
        expect([fill(0, 2 << 20), fill(2 ** 30, 64 << 10), fill(3 * 2 ** 30, 1 << 20), fill(2 << 20, 1 << 20)]).toEqual([[0x21], [0x23], [0x22], [0]]);
        expect(fs.fstatSync(fd).blocks * 512).toBeLessThan(16 << 20);
      } finally {
        fs.closeSync(fd);
      }
    } finally {
      await server.stop();
    }
    // a 20 GiB disk: not even once over
    const big = at('c.vol');
    await setupOk(['volume', 'create', big, '--size', '20G'], { env });
    const server2 = await startServer(big, ['--socket', at('c.sock'), '--journal'], locks);
    try {
      const r = await run(process.execPath, [CLI_BIN, 'protect', big, '--to', `${ext2}/c.cdp`, '--once'], { env });
      expect(r.code).toBe(10);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/c\.cdp: the file system holds files of at most 16\.\d GiB, too small for the base volume of a 20\.0 GiB disk \(at least 20\.\d GiB\)/);
      expect(fs.readdirSync(`${ext2}/c.cdp`).filter((f) => f.startsWith('.')), 'no temporary file left').toEqual([]);
    } finally {
      await server2.stop();
    }
  }, 120_000);

  it.skipIf(!ext2Mounted)(`volume create without --volume-size takes the largest file the file system holds${ext2Mounted ? '' : ' (skipped: no loop-mounted ext2)'}`, async () => {
    const create = (name: string, extra: string[]) => run(process.execPath, [CLI_BIN, 'volume', 'create', `${ext2}/${name}`, ...extra], { env });
    const fitted = await create('f.vol', ['--size', '8G']);
    expect(fitted.code, fitted.stderr).toBe(0);
    expect(fitted.stdout).toMatch(/8\.00 GiB logical disk, \d+ volume blocks of 4\.00 KiB \(16\.\d GiB volume file: the largest file this file system holds\)/);
    expect(fs.statSync(`${ext2}/f.vol`).size).toBeLessThanOrEqual(largestFileIn(ext2, 2 ** 40));
    expect((await run(process.execPath, [CLI_BIN, 'volume', 'check', `${ext2}/f.vol`], { env })).code).toBe(0);
    // too small for the disk once over, and a size asked for that does not fit: one line each, nothing left behind
    const tooBig = await create('g.vol', ['--size', '20G']);
    expect(tooBig.code).toBe(10);
    expect(tooBig.stderr.trim()).toMatch(/^imgstream: \S+g\.vol: the file system holds files of at most 16\.\d GiB, too small for a volume of a 20\.0 GiB disk \(at least 20\.\d GiB\)/);
    const asked = await create('h.vol', ['--size', '8G', '--volume-size', '20G']);
    expect(asked.code).toBe(10);
    expect(asked.stderr.trim()).toMatch(/^imgstream: \S+h\.vol: the file system cannot hold a file of 21474836480 bytes \(choose a smaller --volume-size/);
    expect(fs.readdirSync(ext2).filter((f) => /^[gh]\.vol|^\./.test(f))).toEqual([]);
  });
});
