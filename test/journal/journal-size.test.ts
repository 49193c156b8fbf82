// --journal-size limits the bytes of records a destination has not acknowledged, not the
// bytes the journal's files hold. It counted every byte of each segment not shipped whole,
// and all of the current one after a restart: a protected server that kept up overflowed
// (a 1 MiB limit "outgrown" by 144 KiB of changes, every few seconds, leaving gaps with no
// recovery point), and a server restarted with a small limit overflowed at its first CP
// on a journal shipped but for one record.
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { runWriter } from '../support/nbd-writer.js';
import { startProtect } from '../support/protect-cli.js';
import { cli, qemuIo, startServer } from '../nbd/support.js';
import { inProcessOk, setupOk } from '../support/in-process.js';

const SIZE = 16 << 20;
const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-journal-size-');

async function overflowed(vol: string): Promise<boolean> {
  const st = JSON.parse((await inProcessOk(['protect', 'status', vol, '--json'], { env })).stdout) as { overflow: unknown };
  return st.overflow !== null;
}

describe.skipIf(missing.length > 0)(`--journal-size counts what a destination lacks${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('a server restarted with a small limit does not overflow on records a destination holds', async () => {
    const vol = at('r.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    let server = await startServer(vol, ['--socket', at('r.sock'), '--journal'], locks);
    expect((await runWriter(server.info.uri, ['--count', '400', '--seed', '3', '--aligned'])).code).toBe(0);
    await server.stop();
    await cli(['protect', vol, '--to', at('r.cdp'), '--once'], locks);
    server = await startServer(vol, ['--socket', at('r.sock'), '--journal', '--journal-size', '64K', '--cp-interval', '0.2'], locks);
    for (let i = 0; i < 3; i++) await qemuIo(server.info.uri, [`write -P ${i + 1} ${i * 4096} 4k`]);
    await new Promise((r) => setTimeout(r, 500));
    await server.stop();
    expect(server.stderr()).not.toMatch(/outgrew its limit/);
    expect(await overflowed(vol)).toBe(false);
  }, 120_000);

  it('a protected server whose shipper keeps up never overflows, across segments', async () => {
    const vol = at('l.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    // a 1 MiB limit: segments of 1 MiB, so the writes below fill several
    const server = await startServer(vol, ['--socket', at('l.sock'), '--journal', '--journal-size', '1M', '--cp-interval', '0.3'], locks);
    const shipper = startProtect(vol, at('l.cdp'), ['--interval', '200ms'], env);
    await shipper.waitFor((e) => e.event === 'seed');
    // about 3 MiB at some 400 KiB/s: the shipper is never more than a fraction of the limit behind
    const w = await runWriter(server.info.uri, ['--seconds', '6', '--seed', '8', '--pause-ms', '10', '--aligned']);
    expect(w.code, w.stderr).toBe(0);
    const bytes = w.log.reduce((a, o) => a + (o.op === 'w' ? o.len : 0), 0);
    expect(bytes).toBeGreaterThan(2 << 20);
    await shipper.waitCovered(w.log.at(-1)!.t1);
    expect((await shipper.stop()).code).toBe(0);
    await server.stop();
    expect(server.stderr()).not.toMatch(/outgrew its limit/);
    expect(await overflowed(vol)).toBe(false);
  }, 120_000);
});
