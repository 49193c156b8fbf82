// kill -9 of the NBD server at random moments while its journal is overflowed: a libnbd
// client writes, zeroes and trims, the journal (256 KiB) overflows again and again, the
// changed blocks are saved to dirty.bits page by page at each CP (every 0.1 s), and some
// rounds resync in between (protect --once), merging the saved set with the records since.
// However the kills fall, the resync that follows sends every block the source's disk
// changed: at the end the destination's newest point is the source's disk, byte for byte.
// (Writes acknowledged after the last CP may be lost by a kill, as without a journal: the
// journal has no records of them while overflowed. The comparison is with the disk the
// restarted server holds.) The saved set is never found short of what dirty.json counts
// (which would make the next resync send every block, said on the server's stderr).
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { randomImage, rng } from '../support/images.js';
import { runWriter } from '../support/nbd-writer.js';
import { cli, startServer, type RunningServer } from '../nbd/support.js';
import { asOfBytes, imageBytes } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';
import fs from 'node:fs';

const BS = 4096;
const SIZE = 4 << 20;
const ROUNDS = 8;
const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-overflow-kill-');

/** The destination's newest point is the source's disk (the server stopped), block for block. */
async function expectNewestIsSource(vol: string, dest: string): Promise<void> {
  const source = await imageBytes(vol, env);
  const got = await asOfBytes(dest, 'latest', env);
  const bad: number[] = [];
  for (let b = 0; b < SIZE / BS; b++) if (!got.subarray(b * BS, (b + 1) * BS).equals(source.subarray(b * BS, (b + 1) * BS))) bad.push(b);
  expect(bad, 'blocks the destination lacks').toEqual([]);
}

describe.skipIf(missing.length > 0)(`kill -9 of a server whose journal is overflowed${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('loses no changed block from the resync that follows, wherever the kills fall', async () => {
    const vol = at('o.vol');
    const dest = at('o.cdp');
    fs.writeFileSync(at('base.raw'), randomImage(SIZE / BS, BS, 7, 0.5));
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('base.raw')], { env });
    const serve = () => startServer(vol, ['--socket', at('o.sock'), '--journal', '--journal-size', '256K', '--cp-interval', '0.1'], locks);
    let server: RunningServer = await serve();
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    const random = rng(20261206);
    let overflows = 0;
    let resyncs = 0;
    let stderr = '';
    for (let round = 0; round < ROUNDS; round++) {
      const writer = runWriter(server.info.uri, ['--seconds', '4', '--seed', String(700 + round), '--pause-ms', '1', '--flush-every', '30']);
      // odd rounds kill anywhere in the first 0.7 s (before, at or after an overflow); even
      // rounds wait for this run's first overflow, then kill up to 0.4 s after it, so the
      // overflowed path is exercised however slow the machine is
      for (let i = 0; round % 2 === 0 && i < 300 && !/outgrew its limit/.test(server.stderr()); i++) await new Promise((r) => setTimeout(r, 25));
      await new Promise((r) => setTimeout(r, round % 2 === 0 ? Math.floor(random() * 400) : 150 + Math.floor(random() * 550)));
      overflows += (server.stderr().match(/outgrew its limit/g) ?? []).length;
      await server.kill9();
      stderr += server.stderr();
      await writer;
      server = await serve();
      if (round % 2 === 1) {
        const r = await cli(['protect', vol, '--to', dest, '--once', '--json'], locks);
        resyncs += r.stdout.split('\n').filter((l) => l.includes('"kind":"resync"')).length;
      }
    }
    await cli(['protect', vol, '--to', dest, '--once'], locks);
    await server.stop();
    stderr += server.stderr();
    // a set saved short of what dirty.json counts would be taken as every block: never after a kill
    expect(stderr).not.toMatch(/missing or damaged/);
    expect(overflows, 'the journal overflowed in the rounds it waited for').toBeGreaterThanOrEqual(ROUNDS / 2);
    expect(resyncs, 'rounds resynced in between').toBeGreaterThanOrEqual(2);
    await expectNewestIsSource(vol, dest);
  }, 180_000);

  // the records an overflow drops are deleted only once its changed blocks are saved: a
  // kill between its record and that save leaves them, and the restart takes their blocks.
  // A kill after a CP committed while overflowed, before its journal marker (the overflow's
  // record gone with the segments it dropped): the restart finds the disk ahead of the
  // journal, with no records; the saved set holds what changed (it once refused to start)
  for (const step of ['overflow-marker', 'dirty-bits', 'overflowed-cp']) {
    it(`a kill as the journal overflows (${step}) loses no block from the resync`, async () => {
      const vol = at(`${step}.vol`);
      const dest = at(`${step}.cdp`);
      await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
      const args = ['--socket', at(`${step}.sock`), '--journal', '--journal-size', '256K', '--cp-interval', '0.1'];
      let server = await startServer(vol, args, locks);
      await cli(['protect', vol, '--to', dest, '--once'], locks);
      await server.stop();
      server = await startServer(vol, args, locks, { env: { IMGSTREAM_CRASH_AT: step } });
      // writes past the limit: at the CP after them the journal overflows, and the server dies there (the writer with it)
      const w = await runWriter(server.info.uri, ['--seconds', '3', '--seed', '41', '--aligned', '--flush-every', '8']);
      expect(w.log.filter((o) => o.op === 'w').length, w.stderr).toBeGreaterThan(0);
      expect(w.stderr).toMatch(/not connected|closed|reset|EOF/i);
      const killed = await server.kill9();
      expect(killed.signal ?? server.stderr(), 'the server died at the crash point').toBe('SIGKILL');
      server = await startServer(vol, args, locks);
      // its listening line says what protect status says: a resync waits
      expect(server.info.journal?.overflowed, 'the restarted server says a resync waits').toBe(true);
      await cli(['protect', vol, '--to', dest, '--once'], locks);
      await server.stop();
      await expectNewestIsSource(vol, dest);
    }, 120_000);
  }
});
