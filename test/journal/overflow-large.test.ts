// A journal that overflowed tracks the blocks changed since as a bitmap (dirty.bits), not
// a list: a guest's trim of 80 GiB of a 1 TiB disk while the link is down (a mkfs, an
// fstrim) is 2^24+ blocks, which once failed every such request with EIO ("Set maximum
// size exceeded") and rewrote a list of tens of MiB at every CP. Through the CLI with
// qemu-io: the trims succeed, the count survives kill -9 of the server, and the file stays
// small. A damaged dirty.bits is never taken for fewer blocks: every block is resynced,
// said on the server's stderr, and the destination is exact.
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { cli, qemuIo, startServer, type RunningServer } from '../nbd/support.js';
import { inProcessOk, setupOk } from '../support/in-process.js';
import { loadDirtyBlocks } from '../../src/journal/dirty-blocks.js';
import { readDirty } from '../../src/journal/journal-files.js';

const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-overflow-large-');
const started: RunningServer[] = [];
afterAll(async () => {
  for (const s of started) await s.kill9();
});

interface JournalStatusJson {
  overflow: { after: number; blocks: number } | null;
}

async function overflowOf(vol: string): Promise<JournalStatusJson['overflow']> {
  return (JSON.parse((await inProcessOk(['protect', 'status', vol, '--json'], { env })).stdout) as JournalStatusJson).overflow;
}

async function serve(vol: string): Promise<RunningServer> {
  const s = await startServer(vol, ['--socket', at(`${started.length}.sock`), '--journal', '--journal-size', '1M', '--cp-interval', '0.2'], locks);
  started.push(s);
  return s;
}

async function overflowed(server: RunningServer): Promise<void> {
  for (let i = 0; i < 100 && !/outgrew its limit/.test(server.stderr()); i++) await new Promise((r) => setTimeout(r, 100));
  expect(server.stderr()).toMatch(/outgrew its limit/);
}

describe.skipIf(missing.length > 0)('a journal overflowed on a large disk', () => {
  it('takes trims of 2^24+ blocks, keeps their count across kill -9, in a file of a few MiB', async () => {
    const vol = at('big.vol');
    await setupOk(['volume', 'create', vol, '--size', '1T'], { env });
    let server = await serve(vol);
    await qemuIo(server.info.uri, ['write -P 0x01 0 2M', 'flush']);
    await overflowed(server);
    // 80 GiB trimmed (20971520 blocks of 4 KiB), then 64 KiB written inside it
    await qemuIo(server.info.uri, [...Array.from({ length: 80 }, (_, i) => `discard ${i}G 1G`), 'write -P 0x04 7G 64k', 'flush']);
    expect(server.stderr()).not.toMatch(/internal error|maximum size/i);
    expect((await overflowOf(vol))?.blocks).toBe(20971520);
    await server.kill9();
    server = await serve(vol);
    expect((await overflowOf(vol))?.blocks).toBe(20971520);
    const saved = loadDirtyBlocks(`${vol}.journal`, readDirty(`${vol}.journal`)!)!;
    expect(saved.size).toBe(20971520);
    expect([0, 511, (7 * 2 ** 30) / 4096, 20971519].filter((l) => !saved.has(l))).toEqual([]);
    expect(saved.has(20971520)).toBe(false);
    // (writes after the restart are journaled again, after the set: the resync sends both)
    await qemuIo(server.info.uri, ['write -P 0x05 100G 4k', 'discard 200G 1G', 'flush']);
    expect((await overflowOf(vol))?.blocks).toBe(20971520);
    expect(fs.statSync(`${vol}.journal/dirty.bits`).size).toBeLessThan(4 << 20);
    await server.stop();
  }, 120_000);

  it('resyncs every block when dirty.bits is damaged, and the destination is exact', async () => {
    const vol = at('small.vol');
    const dest = at('small.cdp');
    await setupOk(['volume', 'create', vol, '--size', '8M'], { env });
    const server = await serve(vol);
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    await qemuIo(server.info.uri, ['write -P 0x11 0 3M', 'flush']);
    await overflowed(server);
    await qemuIo(server.info.uri, ['write -P 0x22 5M 64k', 'discard 1M 512k', 'flush']);
    expect((await overflowOf(vol))?.blocks).toBe(768 + 16);
    const bits = `${vol}.journal/dirty.bits`;
    const fd = fs.openSync(bits, 'r+');
    fs.writeSync(fd, Buffer.from('damaged!'), 0, 8, 0);
    fs.closeSync(fd);
    const r = await cli(['protect', vol, '--to', dest, '--once', '--json'], locks);
    const resync = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event: string; blocks?: number }).find((e) => e.event === 'overflow');
    expect(resync?.blocks).toBe(2048);
    expect(server.stderr()).toMatch(/dirty\.bits\) is missing or damaged: every block of the disk is taken as changed/);
    await server.stop();
    await inProcessOk(['volume', 'export', vol, '--to', at('src.img')], { env });
    await inProcessOk(['volume', 'export', dest, '--as-of', 'latest', '--to', at('dst.img')], { env });
    expect(fs.readFileSync(at('dst.img')).equals(fs.readFileSync(at('src.img')))).toBe(true);
  }, 120_000);
});
