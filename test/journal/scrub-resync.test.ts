// A scrub leads to a resync: `protect status DEST --verify` (from cron, next to a running
// protect, taking no lock) finds bit rot in an interval's data; it leaves its finding in
// DEST/scrub.json, the destination takes it up at the shipper's next transfer, and the
// running shipper sends a full resync (event `damaged`), from which the newest recovery
// points rebuild exactly; a later scrub of the same damage asks for no second one. On a
// local directory and on a peer daemon (whose scrub runs on the daemon) alike.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { startProtect, type RunningProtect } from '../support/protect-cli.js';
import { qemuIo, run, startServer, CLI_BIN, finished, type RunningServer } from '../nbd/support.js';
import { listeningPort } from '../support/cli.js';
import { makeToken } from '../peer/support.js';
import { inProcessOk, setupOk } from '../support/in-process.js';

const SIZE = 8 << 20;
const missing = journalTestMissing();
const { root, locks, at, env } = journalTestDir('imgstream-scrub-resync-');
/** A check run in this process, not as a process of its own (exports, status, lists: tested as processes elsewhere). */
const check = (args: string[]) => inProcessOk(args, { env: { IMGSTREAM_LOCK_DIR: locks } });
const running: Array<{ kill: () => void }> = [];
afterAll(() => {
  for (const r of running) r.kill();
});

/** Flips a byte in the first block of data of interval file `file` (its header and index stay intact). */
function rot(file: string): void {
  const fd = fs.openSync(file, 'r+');
  try {
    const head = Buffer.alloc(8);
    fs.readSync(fd, head, 0, 8, 0);
    const at = 8 + head.readUInt32LE(4) + 100;
    const b = Buffer.alloc(1);
    fs.readSync(fd, b, 0, 1, at);
    b[0] ^= 0xff;
    fs.writeSync(fd, b, 0, 1, at);
  } finally {
    fs.closeSync(fd);
  }
}

async function setup(name: string): Promise<{ vol: string; server: RunningServer }> {
  const vol = at(`${name}.vol`);
  await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
  const server = await startServer(vol, ['--socket', at(`${name}.sock`), '--journal'], locks);
  running.push({ kill: () => server.child.kill('SIGKILL') });
  return { vol, server };
}

/** Ships a few writes, rots the data of the first interval with data, scrubs, and checks the resync that follows. */
async function scrubThenResync(vol: string, server: RunningServer, shipper: RunningProtect, dest: string, local: string, reach: string[]): Promise<void> {
  await shipper.waitFor((e) => e.event === 'seed');
  for (const [i, pattern] of ['0x11', '0x22', '0x33'].entries()) {
    await qemuIo(server.info.uri, [`write -P ${pattern} ${i * 64}k 64k`]);
    await new Promise((r) => setTimeout(r, 400));
  }
  await shipper.waitCovered(Date.now());
  const victim = shipper.events.find((e) => e.event === 'interval' && (e.blocks ?? 0) > 0)!;
  rot(path.join(local, 'intervals', `${String(victim.seq).padStart(10, '0')}.ivl`));

  const scrub = await run(process.execPath, [CLI_BIN, 'protect', 'status', dest, '--verify', ...reach], { env });
  expect(scrub.code, scrub.stderr).toBe(9);
  expect(scrub.stdout).toContain('full resync asked for');
  expect(scrub.stderr).toContain('protect\'s next transfer sends a full resync');
  expect(fs.existsSync(path.join(local, 'scrub.json'))).toBe(true);

  // the running shipper is told at its next transfer (a write, or a quiet time) and sends every block
  await qemuIo(server.info.uri, ['write -P 0x44 256k 4k']);
  const damaged = await shipper.waitFor((e) => e.event === 'damaged', 30_000);
  expect(damaged.seq).toBe(victim.seq);
  await shipper.waitFor((e) => e.event === 'interval' && e.kind === 'resync' && e.blocks === SIZE / 4096, 30_000);
  await qemuIo(server.info.uri, ['write -P 0x55 512k 4k']);
  await shipper.waitCovered(Date.now());

  // the newest point rebuilds exactly; the scrub now names only the points lost before the resync
  const st = JSON.parse((await check(['protect', 'status', dest, '--json', ...reach])).stdout) as { window: { end: string } };
  await check(['volume', 'export', dest, '--as-of', st.window.end, ...reach, '--to', at(`${path.basename(local)}-end.raw`)]);
  await check(['volume', 'export', vol, '--to', at(`${path.basename(local)}-src.raw`)]);
  expect(fs.readFileSync(at(`${path.basename(local)}-end.raw`)).equals(fs.readFileSync(at(`${path.basename(local)}-src.raw`)))).toBe(true);
  const again = await run(process.execPath, [CLI_BIN, 'protect', 'status', dest, '--verify', '--json', ...reach], { env });
  expect(again.code).toBe(9);
  const v = (JSON.parse(again.stdout || again.stderr) as { error: { details: { verified: { lost: Array<{ before: string | null }>; resync?: unknown } } } }).error.details.verified;
  expect(v.lost.every((r) => r.before !== null), 'every point from the resync on rebuilds').toBe(true);
  expect(v.resync, 'nothing more to ask for').toBeUndefined();
  await qemuIo(server.info.uri, ['write -P 0x66 768k 4k']);
  await shipper.waitCovered(Date.now());
  expect(shipper.events.filter((e) => e.event === 'damaged')).toHaveLength(1);
  expect((await shipper.stop()).code).toBe(0);
}

describe.skipIf(missing.length > 0)(`a scrub that finds damage leads to a full resync${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('at a destination directory, with the shipper running', async () => {
    const { vol, server } = await setup('l');
    const dest = at('l.cdp');
    const shipper = startProtect(vol, dest, ['--interval', '250ms'], env);
    running.push({ kill: () => shipper.child.kill('SIGKILL') });
    await scrubThenResync(vol, server, shipper, dest, dest, []);
    await server.stop();
  }, 180_000);

  it('at a peer daemon, whose scrub leaves the finding on its side', async () => {
    const { vol, server } = await setup('p');
    const token = makeToken(root, 'p-token');
    fs.mkdirSync(at('peer-root'));
    const daemon = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', at('peer-root'), '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    running.push({ kill: () => daemon.kill('SIGKILL') });
    const done = finished(daemon, 180_000);
    const url = `peer://127.0.0.1:${await listeningPort(daemon, done)}/p.cdp`;
    const reach = ['--token-file', token, '--plain'];
    const shipper = startProtect(vol, url, ['--interval', '250ms', ...reach], env);
    running.push({ kill: () => shipper.child.kill('SIGKILL') });
    await scrubThenResync(vol, server, shipper, url, at('peer-root/p.cdp'), reach);
    daemon.kill('SIGTERM');
    await done;
    await server.stop();
  }, 180_000);
});
