// A guest's trim of a large range (an fstrim, a mkfs: ~66 GiB of an 80 GiB disk here, more
// than 2^24 blocks) while the disk is protected. The shipper once kept an entry per block
// zeroed: past 2^24 it died ("Map maximum size exceeded") and died again on every restart,
// and below that an interval of 16 GiB of trims carried a 96 MB index. A trim is now one
// run, in the interval, on the wire and in the interval file; a resync after an overflow
// sends the unmapped stretches of what changed as runs too. Through the CLI with qemu-io:
// the interval stays small, the disk as of it is exact from export and from restore, a
// fold takes the runs into the base and a scrub finds it clean; the same through a peer
// daemon after an overflow.
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { qemuIo, run, startServer, type RunningServer } from '../nbd/support.js';
import { CLI_BIN, finished, listeningPort } from '../support/cli.js';
import { makeToken } from '../peer/support.js';
import { inProcessOk, setupOk } from '../support/in-process.js';

const missing = journalTestMissing();
const { root, locks, at, env } = journalTestDir('imgstream-trim-large-');
const G = 2 ** 30;
/** 34 discards of 2000 MiB from 0 (a request is at most 2 GiB): 17 408 000 blocks of 4 KiB, more than 2^24. */
const TRIMS = Array.from({ length: 34 }, (_, i) => `discard ${i * 2000}M 2000M`);
const TRIMMED_BLOCKS = (34 * 2000 * 2 ** 20) / 4096;

async function once(vol: string, dest: string, extra: string[] = []): Promise<Array<Record<string, unknown>>> {
  const r = await run(process.execPath, [CLI_BIN, 'protect', vol, '--to', dest, '--once', '--json', ...extra], { env });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** What `file` (a raw image of 80 GiB) holds where the test wrote, and the bytes it allocates: every other byte reads as zeros when those are few. */
function regions(file: string, at: number[]): { fills: string[]; allocated: number } {
  const fd = fs.openSync(file, 'r');
  try {
    const fills = at.map((o) => {
      const b = Buffer.alloc(64 << 10);
      fs.readSync(fd, b, 0, b.length, o);
      return [...new Set(b)].join(',');
    });
    return { fills, allocated: fs.fstatSync(fd).blocks * 512 };
  } finally {
    fs.closeSync(fd);
  }
}

/** The disk as of the newest point: from an export of the destination and (`restore`) from a volume restored out of it. */
async function expectNewest(dest: string, name: string, want: Array<[number, string]>, restore = true): Promise<void> {
  await inProcessOk(['volume', 'export', dest, '--as-of', 'latest', '--to', at(`${name}.img`)], { env });
  const exported = regions(at(`${name}.img`), want.map(([o]) => o));
  expect(exported.fills).toEqual(want.map(([, f]) => f));
  // holes elsewhere: nothing but what was written is allocated (a block left over from before a trim would be)
  expect(exported.allocated).toBeLessThan(8 << 20);
  if (!restore) return;
  const r = await run(process.execPath, [CLI_BIN, 'restore', '--to', at(`${name}.vol`), '--as-of', 'latest', '--from', dest], { env });
  expect(r.code, r.stderr).toBe(0);
  await inProcessOk(['volume', 'export', at(`${name}.vol`), '--to', at(`${name}-r.img`)], { env });
  expect(regions(at(`${name}-r.img`), want.map(([o]) => o)).fills).toEqual(want.map(([, f]) => f));
}

describe.skipIf(missing.length > 0)(`a trim of 2^24+ blocks on a protected disk${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('ships as runs: a small interval, exact as of it, folded into the base and scrubbed clean', async () => {
    const vol = at('t.vol');
    const dest = at('t.cdp');
    await setupOk(['volume', 'create', vol, '--size', '80G'], { env });
    const server = await startServer(vol, ['--socket', at('t.sock'), '--journal'], locks);
    try {
      await once(vol, dest);
      // the base's checksums of an empty disk: holes (80 MiB of entries, once all written)
      expect(fs.statSync(`${dest}/base.sums`).blocks * 512).toBeLessThan(1 << 20);
      await qemuIo(server.info.uri, ['write -P 0x01 0 1M', 'write -P 0x02 70G 1M', ...TRIMS, 'write -P 0x03 50G 64k', 'flush']);
      const shipped = (await once(vol, dest)).filter((e) => e.event === 'interval');
      // the trims and the blocks written (the first 1 MiB twice when its write fell in an interval of its own)
      const blocks = shipped.reduce((n, e) => n + Number(e.blocks), 0);
      expect(blocks).toBeGreaterThanOrEqual(TRIMMED_BLOCKS + 256);
      expect(blocks).toBeLessThanOrEqual(TRIMMED_BLOCKS + 512);
      const ivBytes = fs.readdirSync(`${dest}/intervals`).reduce((n, f) => n + fs.statSync(`${dest}/intervals/${f}`).size, 0);
      // 1 MiB + 64 KiB of data, 1 MiB more when the first write fell in an interval of its own
      // (then trimmed by the next), and a few KiB of entries: an entry per block would be 400 MB
      expect(ivBytes, 'the intervals: data, and an entry per run').toBeLessThan((2 << 20) + (64 << 10) + (64 << 10));
      const want: Array<[number, string]> = [[0, '0'], [50 * G, '3'], [50 * G + (64 << 10), '0'], [66 * G, '0'], [70 * G, '2']];
      await expectNewest(dest, 'a', want);
      // retention folds the runs into the base (and its checksums): the disk as of the newest point is the same
      await qemuIo(server.info.uri, ['write -P 0x04 10G 64k', 'flush']);
      await new Promise((r) => setTimeout(r, 1200));
      await once(vol, dest, ['--keep', '1s']);
      await new Promise((r) => setTimeout(r, 1200));
      await qemuIo(server.info.uri, ['write -P 0x05 11G 64k', 'flush']);
      await once(vol, dest, ['--keep', '1s']);
      const status = JSON.parse((await inProcessOk(['protect', 'status', dest, '--json'], { env })).stdout) as { base: { seq: number } };
      expect(status.base.seq, 'the trims folded into the base').toBeGreaterThanOrEqual(2);
      await expectNewest(dest, 'b', [...want, [10 * G, '4'], [11 * G, '5']], false);
      const verify = await run(process.execPath, [CLI_BIN, 'protect', 'status', dest, '--verify'], { env });
      expect(verify.code, verify.stdout + verify.stderr).toBe(0);
      expect(verify.stdout).toMatch(/base volume checks clean, its 20971520 blocks match base\.sums/);
    } finally {
      await server.stop();
    }
  }, 180_000);

  it('after an overflow, resyncs the trimmed stretches as runs through a peer daemon', async () => {
    const vol = at('p.vol');
    await setupOk(['volume', 'create', vol, '--size', '80G'], { env });
    const server: RunningServer = await startServer(vol, ['--socket', at('p.sock'), '--journal', '--journal-size', '1M', '--cp-interval', '0.2'], locks);
    const token = makeToken(root, 'p-token');
    fs.mkdirSync(at('peer'));
    const daemon = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', at('peer'), '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const done = finished(daemon, 170_000);
    try {
      const url = `peer://127.0.0.1:${await listeningPort(daemon, done)}/p.cdp`;
      await once(vol, url, ['--token-file', token, '--plain']);
      await qemuIo(server.info.uri, ['write -P 0x11 0 3M', 'write -P 0x12 70G 1M', 'flush']);
      for (let i = 0; i < 100 && !/outgrew its limit/.test(server.stderr()); i++) await new Promise((r) => setTimeout(r, 100));
      expect(server.stderr()).toMatch(/outgrew its limit/);
      await qemuIo(server.info.uri, [...TRIMS, 'write -P 0x13 50G 64k', 'flush']);
      const events = await once(vol, url, ['--token-file', token, '--plain']);
      const resync = events.find((e) => e.event === 'interval' && e.kind === 'resync');
      // what changed since the destination's last point: the trims, and 1 MiB at 100 GiB
      expect(Number(resync?.blocks)).toBe(TRIMMED_BLOCKS + 256);
      const ivDir = at('peer/p.cdp/intervals');
      const ivBytes = fs.readdirSync(ivDir).reduce((n, f) => n + fs.statSync(`${ivDir}/${f}`).size, 0);
      expect(ivBytes, 'the resync: data, and an entry per run').toBeLessThan(4 << 20);
      await expectNewest(at('peer/p.cdp'), 'pr', [[0, '0'], [3 << 20, '0'], [50 * G, '19'], [66 * G, '0'], [70 * G, '18']]);
    } finally {
      daemon.kill('SIGTERM');
      await done;
      await server.stop();
    }
  }, 180_000);
});
