// The base of a protection destination keeps checksums of its data (DEST/base.sums),
// written at the seed and at each fold: bit rot in the base is found by a restore or an
// export that reads the block (exit 9, nothing created) and by a scrub (protect status
// --verify), whose finding makes the running shipper send a full resync; once retention
// folds it, the base is whole again and every check passes. A destination without the
// file (seeded by an older imgstream), or with a damaged one, still restores, saying its
// base blocks were not checked.
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { startProtect } from '../support/protect-cli.js';
import { cli, qemuIo, run, startServer, CLI_BIN } from '../nbd/support.js';
import { randomImage } from '../support/images.js';
import { inProcessOk, setupOk } from '../support/in-process.js';

const BS = 4096;
const SIZE = 8 << 20;
const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-base-sums-');
/** A check run in this process, not as a process of its own (exports, status, lists: tested as processes elsewhere). */
const check = (args: string[]) => inProcessOk(args, { env: { IMGSTREAM_LOCK_DIR: locks } });
const started: Array<{ kill: (signal: NodeJS.Signals) => boolean }> = [];
afterAll(() => {
  for (const c of started) c.kill('SIGKILL');
});

const imgstream = (args: string[]) => run(process.execPath, [CLI_BIN, ...args], { env: { IMGSTREAM_LOCK_DIR: locks } });
const json = async <T>(args: string[]): Promise<T> => JSON.parse((await cli([...args, '--json'], locks)).stdout) as T;

/** Flips a byte inside the only copy in `file` of a block filled with `pattern`. */
function rotBlockOf(file: string, pattern: number): void {
  const data = fs.readFileSync(file);
  const at = data.indexOf(Buffer.alloc(BS, pattern));
  expect(at, `a block of 0x${pattern.toString(16)} in ${file}`).toBeGreaterThanOrEqual(0);
  expect(data.indexOf(Buffer.alloc(BS, pattern), at + 1), 'one copy only').toBe(-1);
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([pattern ^ 0xff]), 0, 1, at + 100);
  fs.closeSync(fd);
}

interface Verified {
  verified: { base: { ok: boolean; dataBlocks: number; badBlocks: number[]; dataUnchecked?: string } };
}

describe.skipIf(missing.length > 0)(`base checksums at a protection destination${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('find bit rot in the base: restore and export refuse it, a scrub asks for a full resync, and its fold makes the base whole again', async () => {
    const vol = at('a.vol');
    const dest = at('a.cdp');
    fs.writeFileSync(at('a.raw'), randomImage(SIZE / BS / 2, BS, 11, 1));
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    await setupOk(['volume', 'import', vol, '--from', at('a.raw'), '-q'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('a.sock'), '--journal'], locks);
    started.push(server.child);
    const shipper = startProtect(vol, dest, ['--interval', '250ms', '--keep', '1s'], env);
    started.push(shipper.child);
    await shipper.waitFor((e) => e.event === 'seed');
    expect(fs.statSync(`${dest}/base.sums`).size).toBe(32 + (SIZE / BS) * 4);
    // a block only the base will hold once its interval is folded
    await qemuIo(server.info.uri, ['write -P 0xab 1M 4k']);
    await shipper.waitCovered(Date.now());
    await qemuIo(server.info.uri, ['write -P 0x11 2M 4k']); // later intervals push the first out of the window
    await shipper.waitFor((e) => e.event === 'interval');
    for (let i = 0; i < 60 && fs.readFileSync(`${dest}/base.vol`).indexOf(Buffer.alloc(BS, 0xab)) < 0; i++) {
      await qemuIo(server.info.uri, [`write -P 0x${(0x20 + i).toString(16)} 3M 4k`]);
      await new Promise((r) => setTimeout(r, 250));
    }
    const clean = await json<Verified>(['protect', 'status', dest, '--verify']);
    expect(clean.verified.base).toMatchObject({ ok: true, dataBlocks: SIZE / BS, badBlocks: [] });
    expect(clean.verified.base.dataUnchecked).toBeUndefined();

    rotBlockOf(`${dest}/base.vol`, 0xab);
    const lbn = (1 << 20) / BS;
    const restored = await imgstream(['restore', '--to', at('r.vol'), '--as-of', 'latest', '--from', dest]);
    expect(restored.code, restored.stderr).toBe(9);
    expect(restored.stderr.trim()).toBe(`imgstream: ${dest}/base.vol (the destination's base volume): block ${lbn} fails its checksum in base.sums (the recovery points that read it cannot be rebuilt until a full resync of the disk arrives; imgstream protect status ${dest} --verify asks the shipper for one)`);
    expect(fs.existsSync(at('r.vol'))).toBe(false);
    const exported = await imgstream(['volume', 'export', dest, '--as-of', 'latest', '--to', at('x.raw')]);
    expect(exported.code, exported.stderr).toBe(9);
    expect(fs.existsSync(at('x.raw'))).toBe(false);

    // the scrub finds it, and the running shipper sends a full resync
    const scrub = await imgstream(['protect', 'status', dest, '--verify', '--json']);
    expect(scrub.code).toBe(9);
    expect((JSON.parse(scrub.stdout) as { error: { details: Verified } }).error.details.verified.base).toMatchObject({ ok: false, badBlocks: [lbn] });
    await qemuIo(server.info.uri, ['write -P 0x77 4M 4k']); // a transfer, which takes the finding up
    const damaged = await shipper.waitFor((e) => e.event === 'damaged');
    expect(damaged).toMatchObject({ base: true, what: `block ${lbn} fails its checksum in base.sums` });
    const resync = await shipper.waitFor((e) => e.event === 'interval' && e.kind === 'resync');
    expect(resync.blocks).toBe(SIZE / BS);
    // the points from the resync on rebuild already; once retention folds it, the base is whole again
    for (let i = 0; i < 60 && (await json<{ base: { seq: number } }>(['protect', 'status', dest])).base.seq < Number(resync.seq); i++) {
      await qemuIo(server.info.uri, [`write -P 0x${(0x40 + i).toString(16)} 5M 4k`]);
      await new Promise((r) => setTimeout(r, 250));
    }
    await shipper.waitCovered(Date.now());
    expect((await shipper.stop()).code).toBe(0);
    await server.stop();
    const healed = await json<Verified & { damaged: string[] }>(['protect', 'status', dest, '--verify']);
    expect(healed.damaged).toEqual([]);
    expect(healed.verified.base).toMatchObject({ ok: true, badBlocks: [] });
    const r = await json<{ baseChecked: number }>(['restore', '--to', at('r.vol'), '--as-of', 'latest', '--from', dest]);
    expect(r.baseChecked).toBeGreaterThan(0);
    await check(['volume', 'export', at('r.vol'), '--to', at('r.raw')]);
    await check(['volume', 'export', vol, '--to', at('src.raw')]);
    expect(fs.readFileSync(at('r.raw')).equals(fs.readFileSync(at('src.raw')))).toBe(true);

    // a damaged checksum file: restores go on, saying the base blocks were not checked; the next fold drops it
    const sums = fs.openSync(`${dest}/base.sums`, 'r+');
    fs.writeSync(sums, Buffer.from('XXXX'), 0, 4, 0);
    fs.closeSync(sums);
    const unchecked = await imgstream(['restore', '--to', at('u.vol'), '--as-of', 'latest', '--from', dest]);
    expect(unchecked.code, unchecked.stderr).toBe(0);
    expect(unchecked.stdout).toMatch(/over the base; the blocks from the base not checked: .*base\.sums: not a base checksum file, or its header is damaged$/m);
  }, 120_000);

  it('a destination seeded without base.sums (an older imgstream) restores and verifies as before, saying its data is not checked', async () => {
    const vol = at('b.vol');
    const dest = at('b.cdp');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('b.sock'), '--journal'], locks);
    started.push(server.child);
    await qemuIo(server.info.uri, ['write -P 0x31 0 64k']);
    const once = () => imgstream(['protect', vol, '--to', dest, '--once', '--keep', '1s']);
    expect((await once()).code).toBe(0);
    fs.rmSync(`${dest}/base.sums`);
    await qemuIo(server.info.uri, ['write -P 0x32 64k 64k']);
    await new Promise((r) => setTimeout(r, 2200));
    await qemuIo(server.info.uri, ['write -P 0x33 128k 64k']);
    expect((await once()).code).toBe(0); // folds the first interval: no checksum file appears
    await server.stop();
    expect(fs.existsSync(`${dest}/base.sums`)).toBe(false);
    const v = await json<Verified>(['protect', 'status', dest, '--verify']);
    expect(v.verified.base).toMatchObject({ ok: true, dataBlocks: 0, dataUnchecked: 'the destination keeps no base.sums (seeded by an older imgstream)' });
    const r = await json<{ baseChecked: number; baseUnchecked: string }>(['restore', '--to', at('rb.vol'), '--as-of', 'latest', '--from', dest]);
    expect(r).toMatchObject({ baseChecked: 0, baseUnchecked: 'the destination keeps no base.sums (seeded by an older imgstream)' });
  }, 60_000);
});
