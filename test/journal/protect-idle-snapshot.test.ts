// A snapshot taken or renamed on a journaled volume while no server holds it (the server
// stopped, or killed) is journaled by the snapshot command itself and reaches the
// protection destination with the next interval, as when the volume is served: restore
// --as-of the name gives the source's snapshot exactly. An import tells the journal the
// blocks it changed: the next transfer resyncs those. A journal the command cannot
// open (the disk changed without it) does not stop the snapshot: it is taken, and the
// line says it was not journaled and why. A volume without a journal is as before.
import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { randomImage, rng } from '../support/images.js';
import { runWriter } from '../support/nbd-writer.js';
import { startProtect } from '../support/protect-cli.js';
import { cli, run, startServer, CLI_BIN } from '../nbd/support.js';
import { asOfBytes, checkReportOf, imageBytes, snapshotNamesOf } from '../support/oracle.js';
import { inProcessOk, setupOk } from '../support/in-process.js';

const BS = 4096;
const SIZE = 8 << 20;
const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-protect-idle-');
const started: Array<{ kill: (signal: NodeJS.Signals) => boolean }> = [];
afterAll(() => {
  for (const c of started) c.kill('SIGKILL');
});

const imgstream = (args: string[]) => run(process.execPath, [CLI_BIN, ...args], { env: { IMGSTREAM_LOCK_DIR: locks } });

async function exported(what: string, asOf?: string): Promise<Buffer> {
  await inProcessOk(['volume', 'export', what, ...(asOf ? ['--as-of', asOf] : []), '--to', at('x.raw'), '--force'], { env: { IMGSTREAM_LOCK_DIR: locks } });
  return fs.readFileSync(at('x.raw'));
}

async function journaledVolume(name: string) {
  const vol = at(`${name}.vol`);
  fs.writeFileSync(at(`${name}.raw`), randomImage(SIZE / BS / 2, BS, 7, 0.5));
  await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
  await setupOk(['volume', 'import', vol, '--from', at(`${name}.raw`), '-q'], { env: { IMGSTREAM_LOCK_DIR: locks } });
  // no CP of the server's own: what it acknowledged is on the disk only at a client's flush
  const serve = async () => {
    const server = await startServer(vol, ['--socket', at(`${name}.sock`), '--journal', '--cp-interval', '3600'], locks);
    started.push(server.child);
    return server;
  };
  return { vol, serve, dest: at(`${name}.cdp`) };
}

describe.skipIf(missing.length > 0)(`snapshots of a journaled volume nobody serves${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('are journaled by the snapshot command and arrive at the destination, renames too, also after the server was killed', async () => {
    const { vol, serve, dest } = await journaledVolume('a');
    let server = await serve();
    const shipper = startProtect(vol, dest, ['--interval', '250ms'], env);
    started.push(shipper.child);
    await shipper.waitFor((e) => e.event === 'seed');
    await runWriter(server.info.uri, ['--count', '40', '--seed', '5', '--aligned']);
    await cli(['snapshot', 'create', vol, 'served'], locks);
    await server.stop();

    // the server is gone: the commands open the volume (and its journal) themselves
    const idle = await cli(['snapshot', 'create', vol, 'idle'], locks);
    expect(idle.stdout.trim()).toMatch(/^snapshot idle created \(.*\); journaled$/);
    const renamed = JSON.parse((await cli(['snapshot', 'rename', vol, 'served', 'weekly', '--json'], locks)).stdout) as Record<string, unknown>;
    expect(renamed).toMatchObject({ name: 'weekly', journaled: true, replayed: 0 });

    // a server killed with writes its last CP lacks: the command replays them before the snapshot
    server = await serve();
    const writer = runWriter(server.info.uri, ['--seconds', '5', '--seed', '6', '--aligned', '--flush-every', '0', '--pause-ms', '1']);
    await new Promise((r) => setTimeout(r, 700));
    await server.kill9();
    const cut = await writer;
    expect(cut.log.filter((o) => o.op === 'w').length, 'writes were acknowledged before the kill').toBeGreaterThan(0);
    const afterKill = JSON.parse((await cli(['snapshot', 'create', vol, 'after-kill', '--json'], locks)).stdout) as { journaled: boolean; replayed: number };
    expect(afterKill.journaled).toBe(true);
    expect(afterKill.replayed, 'the acknowledged writes the kill cut off from their CP').toBeGreaterThan(0);

    await shipper.waitFor((e) => e.event === 'interval' && Array.isArray(e.snapshots) && (e.snapshots as string[]).includes('after-kill'));
    expect((await shipper.stop()).code).toBe(0);
    for (const name of ['idle', 'weekly', 'after-kill']) {
      expect((await exported(dest, name)).equals(await exported(`${vol}@${name}`)), name).toBe(true);
    }
    const old = await imgstream(['volume', 'export', dest, '--as-of', 'served', '--to', at('y.raw')]);
    expect(old.code).toBe(4);
    expect(old.stderr).toContain('weekly');
    // the server starts on the journal the commands wrote to, and protection goes on from it
    server = await serve();
    await runWriter(server.info.uri, ['--count', '10', '--seed', '7', '--aligned']);
    const once = await run(process.execPath, [CLI_BIN, 'protect', vol, '--to', dest, '--once', '--json'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(once.code, once.stderr).toBe(0);
    expect(once.stdout).not.toMatch(/"event":"(seed|overflow)"/);
    await server.stop();
    expect((await exported(dest, 'latest')).equals(await exported(vol))).toBe(true);
  }, 120_000);

  it('taken while the journal is overflowed, are named by the resync that follows as not arriving, never lost in silence', async () => {
    const vol = at('c.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    let server = await startServer(vol, ['--socket', at('c.sock'), '--journal', '--journal-size', '1M', '--cp-interval', '0.2'], locks);
    started.push(server.child);
    expect((await run(process.execPath, [CLI_BIN, 'protect', vol, '--to', at('c.cdp'), '--once'], { env: { IMGSTREAM_LOCK_DIR: locks } })).code).toBe(0);
    await runWriter(server.info.uri, ['--count', '600', '--seed', '12', '--aligned']); // 2.3 MiB and more: past the limit
    for (let i = 0; i < 50 && !/outgrew its limit/.test(server.stderr()); i++) await new Promise((r) => setTimeout(r, 100));
    expect(server.stderr()).toMatch(/outgrew its limit/);
    await server.stop();
    expect((await cli(['snapshot', 'create', vol, 'while-over'], locks)).stdout).toMatch(/; journaled$/m);
    // renamed since: named as it is now (the report named it as it was taken)
    await cli(['snapshot', 'create', vol, 'renamed-later'], locks);
    await cli(['snapshot', 'rename', vol, 'renamed-later', 'renamed-now'], locks);
    server = await serve2();
    const once = await run(process.execPath, [CLI_BIN, 'protect', vol, '--to', at('c.cdp'), '--once', '--json'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    await server.stop();
    expect(once.code, once.stderr).toBe(0);
    const overflow = once.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.event === 'overflow');
    expect(overflow?.lostSnapshots).toEqual(['while-over', 'renamed-now']);

    async function serve2() {
      const s2 = await startServer(vol, ['--socket', at('c.sock'), '--journal', '--journal-size', '1M'], locks);
      started.push(s2.child);
      return s2;
    }
  }, 60_000);

  it('imported into while nobody serves it: protect --once resyncs the changed blocks from the idle volume itself, exactly', async () => {
    // it said "a resync needs the volume served with --journal" and exited 0, shipping nothing
    const { vol, serve, dest } = await journaledVolume('o');
    const server = await serve();
    expect((await imgstream(['protect', vol, '--to', dest, '--once'])).code).toBe(0);
    await runWriter(server.info.uri, ['--count', '8', '--seed', '14', '--aligned', '--flush-every', '8']); // not shipped yet
    await server.stop();
    const img = fs.readFileSync(at('o.raw'));
    for (const lbn of [7, 301, 901]) img.fill(0x5b, lbn * BS, lbn * BS + BS);
    fs.writeFileSync(at('o2.raw'), img);
    expect((await imgstream(['volume', 'import', vol, '--from', at('o2.raw')])).code).toBe(0);
    const once = await imgstream(['protect', vol, '--to', dest, '--once', '--json']);
    expect(once.code, once.stderr).toBe(0);
    const events = once.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.find((e) => e.event === 'waiting')).toBeUndefined();
    const resync = events.find((e) => e.event === 'interval' && e.kind === 'resync');
    expect(resync, once.stdout).toBeDefined();
    expect(resync!.blocks, 'the imported blocks and the writes not shipped, not the disk').toBeLessThan(64);
    expect((await exported(dest, 'latest')).equals(await exported(vol))).toBe(true);
    // and protection goes on from there with a server
    const again = await serve();
    await runWriter(again.info.uri, ['--count', '8', '--seed', '15', '--aligned']);
    expect((await imgstream(['protect', vol, '--to', dest, '--once'])).code).toBe(0);
    await again.stop();
    expect((await exported(dest, 'latest')).equals(await exported(vol))).toBe(true);
  }, 60_000);

  it('an import into it tells the journal which blocks changed: the server starts on it, and protect resyncs just those, exactly', async () => {
    const { vol, serve, dest } = await journaledVolume('i');
    let server = await serve();
    expect((await imgstream(['protect', vol, '--to', dest, '--once'])).code).toBe(0);
    await runWriter(server.info.uri, ['--count', '8', '--seed', '13', '--aligned']); // not shipped yet
    await server.stop();
    // the image with 3 blocks changed
    const img = fs.readFileSync(at('i.raw'));
    for (const lbn of [5, 300, 900]) img.fill(0x5a, lbn * BS, lbn * BS + BS);
    fs.writeFileSync(at('i2.raw'), img);
    const imported = await imgstream(['volume', 'import', vol, '--from', at('i2.raw'), '--json']);
    expect(imported.code, imported.stderr).toBe(0);
    const r = JSON.parse(imported.stdout) as { changedBlocks: number; journaled: boolean };
    expect(r.journaled).toBe(true);
    // it used to leave a disk changed without its journal: the server refused --journal, protect stopped
    server = await serve();
    const once = await imgstream(['protect', vol, '--to', dest, '--once', '--json']);
    await server.stop();
    expect(once.code, once.stderr).toBe(0);
    const events = once.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const overflow = events.find((e) => e.event === 'overflow');
    expect(overflow).toMatchObject({ full: false, reason: `${vol} was imported into (volume import, ${at('i2.raw')})` });
    const resync = events.find((e) => e.event === 'interval' && e.kind === 'resync');
    expect(resync!.blocks, 'the imported blocks and the writes not shipped, not the disk').toBeLessThan(64);
    expect(resync!.blocks).toBeGreaterThanOrEqual(3);
    expect((await exported(dest, 'latest')).equals(await exported(vol))).toBe(true);
    // an import killed before its CP committed, and after: the server starts, protect resyncs, exactly
    for (const [step, fill] of [['journal', 0x61], ['root', 0x62]] as const) {
      for (const lbn of [10, 20]) img.fill(fill, lbn * BS, lbn * BS + BS);
      fs.writeFileSync(at('i3.raw'), img);
      const killed = await run(process.execPath, [CLI_BIN, 'volume', 'import', vol, '--from', at('i3.raw')], { env: { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_CRASH_AT: step } });
      expect(killed.signal, step).toBe('SIGKILL');
      server = await serve();
      const again = await imgstream(['protect', vol, '--to', dest, '--once']);
      await server.stop();
      expect(again.code, `${step}: ${again.stderr}`).toBe(0);
      expect((await exported(dest, 'latest')).equals(await exported(vol)), step).toBe(true);
    }
  }, 60_000);

  it('killed with -9 at every step of taking one and at random moments: the server starts, and each snapshot taken arrives exact', async () => {
    const { vol, serve, dest } = await journaledVolume('k');
    let server = await serve();
    expect((await imgstream(['protect', vol, '--to', dest, '--once'])).code).toBe(0);
    const r = rng(4711);
    // the steps of a snapshot's two CPs, and between the second and its journal record
    const kills: Array<string | number> = ['journal', 'root', 'apply', 'clean-root', 'snapshot-plane', 'snapshot-taken', Math.floor(r() * 400), Math.floor(r() * 400)];
    for (const [i, kill] of kills.entries()) {
      // changed data before each snapshot, so each is a state of its own
      await runWriter(server.info.uri, ['--count', '6', '--seed', String(20 + i), '--aligned']);
      await server.stop();
      const args = [CLI_BIN, 'snapshot', 'create', vol, `k${i}`];
      if (typeof kill === 'string') {
        const killed = await run(process.execPath, args, { env: { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_CRASH_AT: `${kill}:k.vol` } });
        expect(killed.signal, kill).toBe('SIGKILL');
      } else {
        const child = spawn(process.execPath, args, { env: { ...process.env, IMGSTREAM_LOCK_DIR: locks }, stdio: 'ignore' });
        await new Promise((res) => setTimeout(res, kill));
        child.kill('SIGKILL');
        await new Promise((res) => child.once('exit', res));
      }
      // the server opens the journal the killed command left (it used to refuse nothing, and lose the snapshot)
      server = await serve();
    }
    const once = await imgstream(['protect', vol, '--to', dest, '--once', '--json']);
    await server.stop();
    expect(once.code, once.stderr).toBe(0);
    expect(once.stdout, 'no new seed, no resync').not.toMatch(/"event":"(seed|overflow)"/);
    const taken = (await snapshotNamesOf(vol, env)).filter((n) => /^k\d+$/.test(n));
    // killed after its CPs, before its record: taken (the journal's recovery records it)
    expect(taken).toContain('k5');
    for (const name of taken) expect((await asOfBytes(dest, name, env)).equals(await imageBytes(`${vol}@${name}`, env)), name).toBe(true);
    expect((await asOfBytes(dest, 'latest', env)).equals(await imageBytes(vol, env))).toBe(true);
    expect((await checkReportOf(vol, env)).ok).toBe(true);
  }, 120_000);

  it('a volume restored from a dump, served with --journal again and again: its restored snapshots are never recorded as taken here', async () => {
    // the source goes through many CPs: its snapshot's generation is far past the new volume's
    const src = at('rs.vol');
    await setupOk(['volume', 'create', src, '--size', '1M'], { env });
    for (let i = 0; i < 12; i++) {
      fs.writeFileSync(at('rs.raw'), randomImage(64, BS, 100 + i, 0.5));
      await setupOk(['volume', 'import', src, '--from', at('rs.raw')], { env });
    }
    await setupOk(['snapshot', 'create', src, 'from-source'], { env });
    expect((await imgstream(['dump', src, '--level', '0', '--snapshot', 'from-source', '--to', at('rs.l0'), '--catalog', at('rs.catalog')])).code).toBe(0);
    const vol = at('rd.vol');
    expect((await imgstream(['restore', '--from', at('rs.l0'), '--to', vol])).code).toBe(0);
    // each server start after the first reads the journal back (what a crash may have cut off)
    for (const seed of [31, 32, 33]) {
      const server = await startServer(vol, ['--socket', at('rd.sock'), '--journal'], locks);
      started.push(server.child);
      await runWriter(server.info.uri, ['--count', '4', '--seed', String(seed), '--aligned']);
      await server.stop();
      const once = await imgstream(['protect', vol, '--to', at('rd.cdp'), '--once', '--json']);
      expect(once.code, once.stderr).toBe(0);
      expect(once.stdout, 'a snapshot record of it').not.toContain('from-source');
    }
    const asOf = await imgstream(['volume', 'export', at('rd.cdp'), '--as-of', 'from-source', '--to', at('rd.raw')]);
    expect(asOf.code, 'the destination has no point of that name (not-found)').toBe(3);
  }, 60_000);

  it('a level 1 restored into a journaled replica tells its journal which blocks changed: the server starts on it, protect resyncs just those, exactly', async () => {
    const src = at('rp-src.vol');
    const img = randomImage(SIZE / BS, BS, 41, 0.3);
    fs.writeFileSync(at('rp.raw'), img);
    await setupOk(['volume', 'create', src, '--size', String(SIZE)], { env });
    await setupOk(['volume', 'import', src, '--from', at('rp.raw')], { env });
    await setupOk(['snapshot', 'create', src, 'mon'], { env });
    const catalog = ['--catalog', at('rp.catalog')];
    expect((await imgstream(['dump', src, '--level', '0', '--snapshot', 'mon', '--to', at('rp.l0'), ...catalog])).code).toBe(0);
    const replica = at('rp.vol');
    const dest = at('rp.cdp');
    expect((await imgstream(['restore', '--from', at('rp.l0'), '--to', replica])).code).toBe(0);
    // the replica is served with --journal (read by clients, written by none) and protected
    let server = await startServer(replica, ['--socket', at('rp.sock'), '--journal'], locks);
    started.push(server.child);
    expect((await imgstream(['protect', replica, '--to', dest, '--once'])).code).toBe(0);
    await server.stop();
    // the source changes 24 blocks; its level 1 is restored into the replica
    for (let i = 0; i < 24; i++) img.fill(0x30 + i, (i * 37 + 5) * BS, (i * 37 + 6) * BS);
    fs.writeFileSync(at('rp.raw'), img);
    await setupOk(['volume', 'import', src, '--from', at('rp.raw')], { env });
    await setupOk(['snapshot', 'create', src, 'tue'], { env });
    expect((await imgstream(['dump', src, '--level', '1', '--snapshot', 'tue', '--to', at('rp.l1'), ...catalog])).code).toBe(0);
    const restored = await imgstream(['restore', '--from', at('rp.l1'), '--to', replica, '--json']);
    expect(restored.code, restored.stderr).toBe(0);
    expect(JSON.parse(restored.stdout)).toMatchObject({ journaled: true });
    expect((await imgstream(['restore', '--from', at('rp.l1'), '--to', at('rp2.vol')])).stdout).not.toContain('write journal');
    // it used to be a change the journal never saw: the server refused --journal, protect had to start over
    server = await startServer(replica, ['--socket', at('rp.sock'), '--journal'], locks);
    started.push(server.child);
    const once = await imgstream(['protect', replica, '--to', dest, '--once', '--json']);
    await server.stop();
    expect(once.code, once.stderr).toBe(0);
    const events = once.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events.find((e) => e.event === 'overflow')).toMatchObject({ full: false, reason: `${replica} was restored into (restore, file ${at('rp.l1')})`, lostSnapshots: ['tue'] });
    const resync = events.find((e) => e.event === 'interval' && e.kind === 'resync');
    expect(resync!.blocks, 'the 24 changed blocks, not the disk').toBe(24);
    expect((await asOfBytes(dest, 'latest', env)).equals(img)).toBe(true);
    expect((await imageBytes(replica, env)).equals(img)).toBe(true);
  }, 60_000);

  it('are taken, saying they are not journaled, when the disk changed without the journal; a volume without one is as before', async () => {
    const { vol, serve } = await journaledVolume('b');
    const server = await serve();
    await runWriter(server.info.uri, ['--count', '5', '--seed', '8', '--aligned']);
    await server.stop();
    // served without --journal and written to: the journal's last CP marker no longer matches the disk
    const unjournaled = await startServer(vol, ['--socket', at('b.sock')], locks);
    started.push(unjournaled.child);
    await runWriter(unjournaled.info.uri, ['--count', '5', '--seed', '9', '--aligned']);
    await unjournaled.stop();
    const segments = () => fs.readdirSync(`${vol}.journal`).map((f) => [f, fs.statSync(`${vol}.journal/${f}`).size]);
    const before = segments();
    const r = await imgstream(['snapshot', 'create', vol, 'after-import']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toBe('');
    expect(r.stdout.trim()).toMatch(/^snapshot after-import created \(.*\); not journaled, so protection destinations will not get it: .*changed without its journal/);
    expect(segments(), 'the journal is left as it was').toEqual(before);
    const { snapshots: snaps } = JSON.parse((await cli(['snapshot', 'list', vol, '--json'], locks)).stdout) as { snapshots: Array<{ name: string }> };
    expect(snaps.map((s) => s.name)).toContain('after-import');
    const j = JSON.parse((await cli(['snapshot', 'rename', vol, 'after-import', 'kept', '--json'], locks)).stdout) as Record<string, unknown>;
    expect(j).toMatchObject({ name: 'kept', journaled: false });
    expect(String(j.notJournaledBecause)).toContain('changed without its journal');

    const plain = at('plain.vol');
    await cli(['volume', 'create', plain, '--size', '1M'], locks);
    const p = await cli(['snapshot', 'create', plain, 's', '--json'], locks);
    expect(JSON.parse(p.stdout)).not.toHaveProperty('journaled');
    expect(fs.existsSync(`${plain}.journal`)).toBe(false);
  }, 60_000);
});
