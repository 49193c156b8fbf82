// A server that stalls between stamping a write and writing its journal record (a loaded
// machine can deschedule it for longer than the shipper's grace): by the time the record
// appears, the shipper has already claimed later points (intervals closed by time, and
// the quiet updates of an idle volume). The record must go into the next interval (its
// reply left after those points), never end the shipper with "ends before the newest
// recovery point", and the disk as of any moment must still be exact.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { randomImage } from '../support/images.js';
import { modelAt, runWriter } from '../support/nbd-writer.js';
import { startProtect } from '../support/protect-cli.js';
import { cli, startServer } from '../nbd/support.js';
import { setupOk } from '../support/in-process.js';
import { asOfBytes } from '../support/oracle.js';

const BS = 4096;
const SIZE = 4 << 20;
// well past the shipper's grace (250 ms) and its interval here (250 ms), and past the
// second in which a disk changed with no CP marker following counts as changed without the
// journal (unjournaled-change.ts): the volume's lock names a journaling server, whose marker
// is on its way
const STALL_MS = 1500;
const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-protect-stall-');

describe.skipIf(missing.length > 0)(`protection of a server that stalls before writing records${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('puts a late record into the next interval: the shipper goes on and every point is exact', async () => {
    const vol = at('s.vol');
    const dest = at('s.cdp');
    const base = randomImage(SIZE / BS, BS, 9, 0.5);
    fs.writeFileSync(at('base.raw'), base);
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    await setupOk(['volume', 'import', vol, '--from', at('base.raw')], { env: { IMGSTREAM_LOCK_DIR: locks } });
    process.env.IMGSTREAM_TEST_JOURNAL_STALL_MS = String(STALL_MS);
    const server = await startServer(vol, ['--socket', at('s.sock'), '--journal'], locks).finally(() => delete process.env.IMGSTREAM_TEST_JOURNAL_STALL_MS);
    const shipper = startProtect(vol, dest, ['--interval', '250ms'], env);
    await shipper.waitFor((e) => e.event === 'seed');
    // idle a while: the window moves on without intervals
    await shipper.waitCovered(Date.now());
    // each record appears STALL_MS after its stamp: meanwhile the shipper claims later points
    const w = await runWriter(server.info.uri, ['--count', '3', '--seed', '71', '--pause-ms', '400']);
    expect(w.code, w.stderr).toBe(0);
    await shipper.waitCovered(w.log.at(-1)!.t1, 60_000);
    const stopped = await shipper.stop();
    expect(stopped.code, stopped.stderr).toBe(0);
    expect(stopped.stderr).toBe('');
    await server.stop();
    const late = shipper.events.filter((e) => e.event === 'interval' && (e.records ?? 0) > 0);
    expect(late.length, 'the writes were shipped in intervals').toBeGreaterThan(0);
    // the disk as of moments just before each write was sent and just after its reply came
    // (between the two either answer is right), and as of the window's end: exact
    const st = JSON.parse((await cli(['protect', 'status', dest, '--json'], locks)).stdout) as { window: { start: string; end: string } };
    const [from, to] = [Date.parse(st.window.start), Date.parse(st.window.end)];
    const moments = [...w.log.filter((o) => o.op !== 'f').flatMap((o) => [o.t0 - 20, o.t1 + 20]), to].filter((t) => t >= from && t <= to);
    expect(moments.length).toBeGreaterThanOrEqual(4);
    for (const [i, t] of moments.entries()) {
      const want = modelAt(base, w.log, t)!;
      const asOf = new Date(t).toISOString();
      // the first and the last (the window's end) as the command does it, the rest in this process (the same call)
      let got: Buffer;
      if (i === 0 || i === moments.length - 1) {
        await cli(['volume', 'export', dest, '--as-of', asOf, '--to', at('x.raw'), '--force'], locks);
        got = fs.readFileSync(at('x.raw'));
      } else got = await asOfBytes(dest, asOf, env);
      expect(got.equals(want), `as of ${asOf}`).toBe(true);
    }
    expect(fs.readFileSync(at('x.raw')).equals(modelAt(base, w.log, Infinity)!), 'the window\'s end holds every write').toBe(true);
  }, 120_000);
});
