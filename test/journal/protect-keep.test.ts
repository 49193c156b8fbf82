// protect's --keep is the destination's retention, set when given and kept when not: a
// run without it (a cron job's --once) used to put any destination back to 24 h, folding
// away history an administrator had asked to keep. A change is said in one line (a
// `retention` event with --json). Malformed durations are "invalid-input" (4), as every
// malformed value is. --limit-rate holds a shipper to a peer to a rate (a shared WAN link).
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { cli, qemuIo, run, startServer } from '../nbd/support.js';
import { spawn } from 'node:child_process';
import { CLI_BIN, finished, listeningPort } from '../support/cli.js';
import { makeToken } from '../peer/support.js';
import { inProcessOk, setupOk } from '../support/in-process.js';
import { expectOneLineError } from '../support/stream-cli.js';

const missing = journalTestMissing();
const { root, locks, at, env } = journalTestDir('imgstream-protect-keep-');
/** A check run in this process, not as a process of its own (exports, status, lists: tested as processes elsewhere). */
const check = (args: string[]) => inProcessOk(args, { env: { IMGSTREAM_LOCK_DIR: locks } });

async function once(vol: string, dest: string, extra: string[]): Promise<Array<Record<string, unknown>>> {
  const r = await run(process.execPath, [CLI_BIN, 'protect', vol, '--to', dest, '--once', '--json', ...extra], { env });
  expect(r.code, r.stderr).toBe(0);
  return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function keepOf(dest: string): Promise<number> {
  return (JSON.parse((await check(['protect', 'status', dest, '--json'])).stdout) as { keepMs: number }).keepMs;
}

describe.skipIf(missing.length > 0)(`protect --keep${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('is kept by runs that do not give it, changed (and said so) by one that does', async () => {
    const vol = at('k.vol');
    const dest = at('k.cdp');
    await setupOk(['volume', 'create', vol, '--size', '4M'], { env });
    const server = await startServer(vol, ['--socket', at('k.sock'), '--journal'], locks);
    await qemuIo(server.info.uri, ['write -P 0x41 0 64k']);
    await server.stop();
    await once(vol, dest, ['--keep', '2h']);
    expect(await keepOf(dest)).toBe(2 * 3600_000);
    const plain = await once(vol, dest, []);
    expect(await keepOf(dest), 'a run without --keep leaves it').toBe(2 * 3600_000);
    expect(plain.filter((e) => e.event === 'retention')).toEqual([]);
    const shorter = await once(vol, dest, ['--keep', '30m']);
    expect(shorter.filter((e) => e.event === 'retention').map((e) => [e.keepMs, e.keptMs])).toEqual([[1800_000, 2 * 3600_000]]);
    expect(await keepOf(dest)).toBe(1800_000);
    // in text, one line says it
    const text = await run(process.execPath, [CLI_BIN, 'protect', vol, '--to', dest, '--once', '--keep', '1h'], { env });
    expect(text.stdout).toMatch(/the destination keeps 60m of history from now on \(it kept 30m\)\n/);
    // a new destination given no --keep keeps 24 hours
    await once(vol, at('k2.cdp'), []);
    expect(await keepOf(at('k2.cdp'))).toBe(24 * 3600_000);
  }, 60_000);

  it('meets a damaged interval when --keep folds it: ships on, sends every block, and the newest point restores exactly', async () => {
    const vol = at('dmg.vol');
    const dest = at('dmg.cdp');
    await setupOk(['volume', 'create', vol, '--size', '4M'], { env });
    const server = await startServer(vol, ['--socket', at('dmg.sock'), '--journal'], locks);
    try {
      await once(vol, dest, []);
      for (let i = 1; i <= 3; i++) {
        await qemuIo(server.info.uri, [`write -P ${0x60 + i} ${i * 64}k 64k`]);
        await new Promise((r) => setTimeout(r, 1100));
        await once(vol, dest, []);
      }
      // bit rot in interval 2's data: only reading its blocks finds it
      const file = `${dest}/intervals/0000000002.ivl`;
      const bytes = fs.readFileSync(file);
      bytes[8 + bytes.readUInt32LE(4) + 10] ^= 0xff;
      fs.writeFileSync(file, bytes);
      await qemuIo(server.info.uri, ['write -P 0x70 1M 64k']);
      await new Promise((r) => setTimeout(r, 1100));
      // --keep shortened: the fold finds it, holds before it, and protect sends every block instead of failing
      const events = await once(vol, dest, ['--keep', '1s']);
      expect(events.filter((e) => e.event === 'damaged').map((e) => e.seq)).toEqual([2]);
      expect(events.some((e) => e.event === 'interval' && e.kind === 'resync')).toBe(true);
      await cli(['restore', '--to', at('dmg-latest.vol'), '--as-of', 'latest', '--from', dest], locks);
      await check(['volume', 'export', at('dmg-latest.vol'), '--to', at('dmg-latest.raw')]);
      await check(['volume', 'export', vol, '--to', at('dmg-vol.raw')]);
      expect(fs.readFileSync(at('dmg-latest.raw')).equals(fs.readFileSync(at('dmg-vol.raw')))).toBe(true);
      const st = JSON.parse((await check(['protect', 'status', dest, '--json'])).stdout) as { retentionHeld?: { seq: number; resync: string | null } };
      expect(st.retentionHeld).toMatchObject({ seq: 2, resync: expect.any(String) });
    } finally {
      await server.stop();
    }
  }, 60_000);

  it('a --once run on a quiet volume moves the window\'s end up to the last boundary passed, as a running shipper does', async () => {
    const vol = at('q.vol');
    const dest = at('q.cdp');
    await setupOk(['volume', 'create', vol, '--size', '4M'], { env });
    const server = await startServer(vol, ['--socket', at('q.sock'), '--journal'], locks);
    await qemuIo(server.info.uri, ['write -P 0x51 0 64k']);
    await server.stop();
    await once(vol, dest, []);
    const endOf = async () => Date.parse((JSON.parse((await check(['protect', 'status', dest, '--json'])).stdout) as { window: { end: string } }).window.end);
    const first = await endOf();
    await new Promise((r) => setTimeout(r, 2300));
    const asked = Date.now() - 1300; // "as of a second ago", as a cron job's restore asks
    await once(vol, dest, []);
    expect(await endOf()).toBeGreaterThanOrEqual(Math.max(first + 1000, asked - 1000));
    await check(['volume', 'export', dest, '--as-of', new Date(Math.min(asked, await endOf())).toISOString(), '--to', at('q.raw')]);
  }, 60_000);

  it('after an overflow, the source\'s lag runs from the last point the destination claimed, a quiet one too', async () => {
    const vol = at('ql.vol');
    const dest = at('ql.cdp');
    await setupOk(['volume', 'create', vol, '--size', '8M'], { env });
    const server = await startServer(vol, ['--socket', at('ql.sock'), '--journal', '--journal-size', '1M', '--cp-interval', '0.2'], locks);
    try {
      await qemuIo(server.info.uri, ['write -P 0x41 0 64k']);
      await once(vol, dest, []);
      await new Promise((r) => setTimeout(r, 2300));
      await once(vol, dest, []); // nothing new: a quiet time claimed
      const end = (JSON.parse((await check(['protect', 'status', dest, '--json'])).stdout) as { window: { end: string } }).window.end;
      await qemuIo(server.info.uri, ['write -P 0x42 0 3M']);
      type Source = { unshipped: { dropped: boolean; oldest: string | null } };
      let st: Source | null = null;
      for (let i = 0; i < 50; i++) {
        st = JSON.parse((await check(['protect', 'status', vol, '--json'])).stdout) as Source;
        if (st.unshipped.dropped) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(st!.unshipped.dropped, 'the journal overflowed').toBe(true);
      expect(Date.parse(st!.unshipped.oldest!)).toBeGreaterThanOrEqual(Date.parse(end));
    } finally {
      await server.stop();
    }
  }, 60_000);

  it('refuses malformed durations as invalid input (4), in one line, before anything is made', async () => {
    for (const [flag, value] of [['--keep', 'abc'], ['--keep', '-5s'], ['--interval', '0'], ['--interval', '1x']]) {
      const r = await run(process.execPath, [CLI_BIN, 'protect', at('k.vol'), '--to', at('never.cdp'), '--once', flag, value], { env });
      expectOneLineError({ code: r.code, signal: null, stdout: r.stdout, stderr: r.stderr } as never, `${flag} ${value}`, 4, new RegExp(`invalid ${flag} "${value.replace('-', '\\-')}"`));
    }
    const r = await run(process.execPath, [CLI_BIN, 'protect', at('k.vol'), '--to', at('never.cdp'), '--interval', '10s', '--keep', '5s'], { env });
    expect(r.code, r.stderr).toBe(4);
    expect(r.stderr).toMatch(/--keep 5s is shorter than --interval 10s/);
  }, 60_000);

  it('--limit-rate holds a shipper to a peer to that rate; with a destination on this machine it is refused', async () => {
    const vol = at('r.vol');
    await setupOk(['volume', 'create', vol, '--size', '4M'], { env });
    const server = await startServer(vol, ['--socket', at('r.sock'), '--journal'], locks);
    await qemuIo(server.info.uri, ['write -P 0x52 0 1M']);
    await server.stop();
    const token = makeToken(root, 'r-token');
    fs.mkdirSync(at('peer'));
    const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', at('peer'), '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const done = finished(child, 120_000);
    try {
      const port = await listeningPort(child, done);
      const t0 = Date.now();
      const events = await once(vol, `peer://127.0.0.1:${port}/r.cdp`, ['--token-file', token, '--plain', '--limit-rate', '512K']);
      const secs = (Date.now() - t0) / 1000;
      const seed = events.find((e) => e.event === 'seed')!;
      expect(Number(seed.bytes)).toBeGreaterThanOrEqual(1 << 20);
      // 1 MiB and more at 512 KiB/s: about 2 s (a burst of up to a second's worth may go at once)
      expect(secs, 'held to the rate').toBeGreaterThan(1);
    } finally {
      child.kill('SIGTERM');
      await done;
    }
    const local = await run(process.execPath, [CLI_BIN, 'protect', vol, '--to', at('r-local.cdp'), '--once', '--limit-rate', '1M'], { env });
    expect(local.code, local.stderr).toBe(2);
    expect(local.stderr).toMatch(/--limit-rate is for peer:\/\/HOST:PORT\/NAME sources and targets/);
  }, 60_000);
});
