// A snapshot renamed on the source reaches its protection destination: the rename is
// journaled (before the CP that commits it, replayed after a crash), shipped with the next
// interval, and from then on the destination's recovery point answers to the new name,
// in the window and once folded into the base (whose snapshot takes the new name), on a
// local directory and on a peer daemon alike. The old name is refused, naming the new one.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { startProtect } from '../support/protect-cli.js';
import { cli, qemuIo, run, startServer, CLI_BIN, finished } from '../nbd/support.js';
import { listeningPort } from '../support/cli.js';
import { makeToken } from '../peer/support.js';
import { inProcessOk, setupOk } from '../support/in-process.js';

const SIZE = 8 << 20;
const missing = journalTestMissing();
const { root, locks, at, env } = journalTestDir('imgstream-protect-rename-');
/** A check run in this process, not as a process of its own (exports, status, lists: tested as processes elsewhere). */
const check = (args: string[]) => inProcessOk(args, { env: { IMGSTREAM_LOCK_DIR: locks } });
/** Processes a failed test would leave running: killed at the end. */
const started: Array<{ kill: (signal: NodeJS.Signals) => boolean }> = [];
afterAll(() => {
  for (const c of started) c.kill('SIGKILL');
});

interface Status {
  window: { start: string; end: string };
  points: Array<{ seq: number; time: string; kind: string; snapshots: string[] }>;
  base: { snapshots: string[] };
}

async function status(dest: string, reach: string[] = []): Promise<Status> {
  return JSON.parse((await check(['protect', 'status', dest, '--json', '--points', ...reach])).stdout) as Status;
}

async function exportRaw(what: string, name: string, asOf?: string, reach: string[] = []): Promise<Buffer> {
  const out = at(name);
  await check(['volume', 'export', what, ...(asOf ? ['--as-of', asOf] : []), ...reach, '--to', out, '--force']);
  return fs.readFileSync(out);
}

/** A served, journaled volume with a 64 KiB pattern written at 0. */
async function servedVolume(name: string, extraEnv: Record<string, string> = {}) {
  const vol = at(`${name}.vol`);
  await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
  const serve = async () => {
    const server = await startServer(vol, ['--socket', at(`${name}.sock`), '--journal'], locks);
    started.push(server.child);
    return server;
  };
  // a server with fault injection: started here, since startServer() passes no environment of its own
  const serveWith = async (more: Record<string, string>) => {
    const child = spawn(process.execPath, [CLI_BIN, 'serve', 'nbd', vol, '--socket', at(`${name}.sock`), '--journal', '--json'], { env: { ...process.env, IMGSTREAM_LOCK_DIR: locks, ...more }, stdio: ['ignore', 'pipe', 'pipe'] });
    started.push(child);
    const done = finished(child, 120_000);
    await new Promise<void>((resolve, reject) => {
      child.stdout!.on('data', () => resolve());
      void done.then((r) => reject(new Error(`the server exited ${r.code ?? r.signal}: ${r.stderr}`)));
    });
    return { done, uri: `nbd+unix:///?socket=${at(`${name}.sock`)}` };
  };
  return { vol, serve, serveWith, extraEnv };
}

describe.skipIf(missing.length > 0)(`snapshot renames under continuous protection${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('answers to the new name in the window and once folded into the base, and refuses the old one naming the new', async () => {
    const { vol, serve } = await servedVolume('r');
    const server = await serve();
    const dest = at('r.cdp');
    const shipper = startProtect(vol, dest, ['--interval', '250ms', '--keep', '1h'], env);
    started.push(shipper.child);
    await shipper.waitFor((e) => e.event === 'seed');
    await qemuIo(server.info.uri, ['write -P 0x11 0 64k']);
    await cli(['snapshot', 'create', vol, 'monday'], locks);
    await qemuIo(server.info.uri, ['write -P 0x22 0 64k']);
    await cli(['snapshot', 'rename', vol, 'monday', 'before-upgrade'], locks);
    const renamed = await shipper.waitFor((e) => Array.isArray(e.renames) && e.renames.length > 0);
    expect(renamed.renames).toEqual([{ from: 'monday', to: 'before-upgrade' }]);
    await qemuIo(server.info.uri, ['write -P 0x33 0 64k']);
    await shipper.waitCovered(Date.now());
    expect((await shipper.stop()).code).toBe(0);

    const source = await exportRaw(`${vol}@before-upgrade`, 'src-snap.raw');
    expect(source.subarray(0, 4).toString('hex')).toBe('11111111');
    const st = await status(dest);
    expect(st.points.flatMap((p) => p.snapshots)).toEqual(['before-upgrade']);
    expect((await exportRaw(dest, 'dest-new.raw', 'before-upgrade')).equals(source), 'the new name restores the snapshot').toBe(true);
    const old = await run(process.execPath, [CLI_BIN, 'volume', 'export', dest, '--as-of', 'monday', '--to', at('dest-old.raw')], { env });
    expect(old.code, old.stderr).toBe(4);
    expect(old.stderr.trim().split('\n')).toHaveLength(1);
    expect(old.stderr).toContain(`"monday" names no recovery point of ${dest} any more: the source renamed that snapshot to before-upgrade`);
    expect(fs.existsSync(at('dest-old.raw'))).toBe(false);

    // retention folds it into the base (a write later than --keep after it): the base's snapshot has the new name, and still answers to it
    await new Promise((r) => setTimeout(r, 1500));
    await qemuIo(server.info.uri, ['write -P 0x77 64k 4k']);
    await new Promise((r) => setTimeout(r, 600));
    await cli(['protect', vol, '--to', dest, '--once', '--keep', '1s'], locks);
    const folded = await status(dest);
    expect(folded.points.flatMap((p) => p.snapshots)).toEqual([]);
    expect(folded.base.snapshots).toEqual(['before-upgrade']);
    expect((await exportRaw(dest, 'dest-base.raw', 'before-upgrade')).equals(source)).toBe(true);
    expect((await exportRaw(`${dest}/base.vol@before-upgrade`, 'base-snap.raw')).equals(source)).toBe(true);
    expect((await run(process.execPath, [CLI_BIN, 'volume', 'export', dest, '--as-of', 'monday', '--to', at('dest-old2.raw')], { env })).code).toBe(4);

    // renamed again, now that it is the base's: a rename in the window applies to it at once, and in the base at the next fold
    await cli(['snapshot', 'rename', vol, 'before-upgrade', 'kept'], locks);
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    expect((await status(dest)).base.snapshots).toEqual(['kept']);
    expect((await exportRaw(dest, 'dest-kept.raw', 'kept')).equals(source)).toBe(true);
    await new Promise((r) => setTimeout(r, 1500));
    await qemuIo(server.info.uri, ['write -P 0x78 64k 4k']);
    await new Promise((r) => setTimeout(r, 600));
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    expect((await exportRaw(`${dest}/base.vol@kept`, 'base-kept.raw')).equals(source), 'the fold renamed the base\'s snapshot').toBe(true);
    await server.stop();
  }, 180_000);

  it('reaches a peer daemon\'s destination the same way', async () => {
    const { vol, serve } = await servedVolume('p');
    const server = await serve();
    const token = makeToken(root, 'p-token');
    fs.mkdirSync(at('peer-root'));
    const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', at('peer-root'), '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const done = finished(child, 120_000);
    try {
      const url = `peer://127.0.0.1:${await listeningPort(child, done)}/p.cdp`;
      const reach = ['--token-file', token, '--plain'];
      const shipper = startProtect(vol, url, ['--interval', '250ms', ...reach], env);
      started.push(shipper.child);
      await shipper.waitFor((e) => e.event === 'seed');
      await qemuIo(server.info.uri, ['write -P 0x44 0 64k']);
      await cli(['snapshot', 'create', vol, 'a'], locks);
      await qemuIo(server.info.uri, ['write -P 0x55 0 64k']);
      await cli(['snapshot', 'rename', vol, 'a', 'b'], locks);
      await shipper.waitFor((e) => Array.isArray(e.renames) && e.renames.length > 0);
      expect((await shipper.stop()).code).toBe(0);
      const source = await exportRaw(`${vol}@b`, 'p-src.raw');
      expect((await status(url, reach)).points.flatMap((p) => p.snapshots)).toEqual(['b']);
      expect((await exportRaw(url, 'p-dest.raw', 'b', reach)).equals(source)).toBe(true);
      const old = await run(process.execPath, [CLI_BIN, 'volume', 'export', url, '--as-of', 'a', ...reach, '--to', at('p-old.raw')], { env });
      expect(old.code, old.stderr).toBe(4);
      expect(old.stderr).toContain('the source renamed that snapshot to b');
    } finally {
      child.kill('SIGTERM');
      await done;
      await server.stop();
    }
  }, 120_000);

  it('a server killed in the middle of a rename makes it when it restarts, and the destination agrees', async () => {
    const { vol, serve, serveWith } = await servedVolume('k');
    const dest = at('k.cdp');
    let server = await serve();
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    await cli(['snapshot', 'create', vol, 'old'], locks);
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    await server.stop();
    // the rename's CP is the first this server makes: it dies there, with the rename in the journal but not in the volume
    const dying = await serveWith({ IMGSTREAM_CRASH_AT: 'journal:k.vol' });
    const r = await run(process.execPath, [CLI_BIN, 'snapshot', 'rename', vol, 'old', 'new'], { env });
    expect(r.code, r.stderr).not.toBe(0);
    expect((await dying.done).signal).toBe('SIGKILL');
    server = await serve();
    const names = async () => (JSON.parse((await check(['snapshot', 'list', vol, '--json'])).stdout) as { snapshots: Array<{ name: string }> }).snapshots.map((x) => x.name);
    expect(await names(), 'the restarted server made the rename its journal holds').toEqual(['new']);
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    const st = await status(dest);
    expect(st.points.flatMap((p) => p.snapshots), 'the destination names it as the source does').toEqual(['new']);
    await cli(['snapshot', 'rename', vol, 'new', 'newer'], locks);
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    expect((await status(dest)).points.flatMap((p) => p.snapshots)).toEqual(['newer']);
    await server.stop();
  }, 120_000);

  it('a server restarted after a rename records no new snapshot: the renamed one keeps its recovery point and its disk', async () => {
    // before: the journal's recovery took the renamed snapshot for one a crash kept out of
    // it and recorded it again, so the destination's point of that name became the disk at the restart
    const { vol, serve } = await servedVolume('t');
    const dest = at('t.cdp');
    let server = await serve();
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    await qemuIo(server.info.uri, ['write -P 0xaa 0 4k']);
    await cli(['snapshot', 'create', vol, 's0'], locks);
    await qemuIo(server.info.uri, ['write -P 0xbb 0 4k']);
    await cli(['snapshot', 'rename', vol, 's0', 's1'], locks);
    await qemuIo(server.info.uri, ['write -P 0xcc 0 4k']);
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    await server.stop();
    // a snapshot taken on the idle volume opens its journal too
    await cli(['snapshot', 'create', vol, 'idle'], locks);
    server = await serve();
    await qemuIo(server.info.uri, ['write -P 0xdd 0 4k']);
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    const st = await status(dest);
    expect(st.points.flatMap((p) => p.snapshots)).toEqual(['s1', 'idle']);
    const source = await exportRaw(`${vol}@s1`, 't-src.raw');
    expect(source.subarray(0, 2).toString('hex')).toBe('aaaa');
    expect((await exportRaw(dest, 't-dest.raw', 's1')).equals(source), 'the destination\'s s1 is the source\'s').toBe(true);
    expect((await exportRaw(dest, 't-idle.raw', 'idle')).subarray(0, 2).toString('hex')).toBe('cccc');
    await server.stop();
  }, 120_000);

  it('renames the journal dropped when it overflowed travel with the resync', async () => {
    const vol = at('o.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('o.sock'), '--journal', '--journal-size', '1M', '--cp-interval', '0.2'], locks);
    started.push(server.child);
    const dest = at('o.cdp');
    let shipper = startProtect(vol, dest, ['--interval', '250ms'], env);
    started.push(shipper.child);
    await shipper.waitFor((e) => e.event === 'seed');
    await cli(['snapshot', 'create', vol, 'a'], locks);
    await cli(['snapshot', 'create', vol, 'b'], locks);
    await shipper.waitFor((e) => e.event === 'interval' && Array.isArray(e.snapshots) && e.snapshots.includes('b'));
    expect((await shipper.stop()).code).toBe(0);
    // the link is down: a rename, then more than the journal may keep (its records dropped), then a rename while overflowed
    await cli(['snapshot', 'rename', vol, 'a', 'a2'], locks);
    await qemuIo(server.info.uri, ['write -P 0x11 0 3M']);
    for (let i = 0; i < 100 && !/outgrew its limit/.test(server.stderr()); i++) await new Promise((r) => setTimeout(r, 100));
    expect(server.stderr()).toMatch(/outgrew its limit/);
    await cli(['snapshot', 'rename', vol, 'b', 'b2'], locks);
    shipper = startProtect(vol, dest, ['--interval', '250ms'], env);
    started.push(shipper.child);
    const resync = await shipper.waitFor((e) => e.event === 'interval' && e.kind === 'resync');
    expect(resync.renames).toEqual([{ from: 'a', to: 'a2' }, { from: 'b', to: 'b2' }]);
    expect((await shipper.stop()).code).toBe(0);
    await server.stop();
    expect((await status(dest)).points.flatMap((p) => p.snapshots).sort()).toEqual(['a2', 'b2']);
  }, 120_000);
});
