// A journal that cannot be written (its disk full): the server answers the changes whose
// records it could not write with an error, refuses every later change and flush, and
// never commits what the journal lacks; restarted, the volume holds exactly the writes
// the client saw acknowledged.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { applyOp, runWriter } from '../support/nbd-writer.js';
import { cli, startServer } from '../nbd/support.js';
import { setupOk } from '../support/in-process.js';

const SIZE = 8 << 20;
const missing = journalTestMissing();
const { locks, at } = journalTestDir('imgstream-journal-full-');

describe.skipIf(missing.length > 0)(`a journal whose disk is full${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('fails the writes it cannot record, refuses later ones and flushes, and loses no acknowledged write', async () => {
    const vol = at('f.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    process.env.IMGSTREAM_TEST_JOURNAL_FULL_AT = String(600 << 10);
    let server: Awaited<ReturnType<typeof startServer>>;
    try {
      server = await startServer(vol, ['--socket', at('f.sock'), '--journal', '--cp-interval', '0.1'], locks);
    } finally {
      delete process.env.IMGSTREAM_TEST_JOURNAL_FULL_AT;
    }
    const w = await runWriter(server.info.uri, ['--seconds', '20', '--seed', '77', '--flush-every', '10', '--pause-ms', '1']);
    expect(w.code, 'the client saw a write fail').not.toBe(0);
    expect(w.log.filter((o) => o.op === 'w').length).toBeGreaterThan(20);
    expect(server.stderr()).toMatch(/changes are refused until the server is restarted/);
    // every later change and flush is refused; the server stays up
    const again = await runWriter(server.info.uri, ['--count', '3', '--seed', '78']);
    expect(again.code).not.toBe(0);
    expect(again.log.filter((o) => o.op !== 'f')).toEqual([]);
    await server.kill9();
    // restarted: the journal's records after the last CP are replayed, the failed ones were never kept
    const restarted = await startServer(vol, ['--socket', at('f.sock'), '--journal'], locks);
    await restarted.stop();
    await cli(['volume', 'export', vol, '--to', at('f.raw'), '--force'], locks);
    const model = Buffer.alloc(SIZE);
    for (const o of w.log) applyOp(model, o);
    expect(fs.readFileSync(at('f.raw')).equals(model), 'the volume is exactly the acknowledged writes').toBe(true);
    const check = await cli(['volume', 'check', vol, '--json'], locks);
    expect(JSON.parse(check.stdout).ok).toBe(true);
  }, 120_000);
});
