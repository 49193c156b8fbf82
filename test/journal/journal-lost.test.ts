// A journal that lost records a destination holds (its segment emptied or cut short, or
// restored from an older copy; or a power cut before they reached the disk) numbered its
// records again from its end: once it grew past the destination's last record, protect
// took the new records for the ones the destination lacked, claimed a recovery point
// without the flushed writes in between, and exited 0. Now the server says the journal
// lost records, numbering goes on after the destination's, and the next transfer resyncs
// every block: the destination's newest point is the source's disk.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { runWriter } from '../support/nbd-writer.js';
import { cli, run, startServer, CLI_BIN } from '../nbd/support.js';
import { inProcessOk, setupOk } from '../support/in-process.js';
import { listSegments } from '../../src/journal/journal-files.js';

const SIZE = 8 << 20;
const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-journal-lost-');

async function exportRaw(what: string, out: string, asOf?: string): Promise<Buffer> {
  await inProcessOk(['volume', 'export', what, ...(asOf ? ['--as-of', asOf] : []), '--to', at(out), '--force'], { env });
  return fs.readFileSync(at(out));
}

describe.skipIf(missing.length > 0)(`a journal that lost records a destination holds${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  for (const how of ['emptied', 'removed'] as const) {
    it(`(its segment ${how}) is said, and the next transfer resyncs: the destination is the source`, async () => {
      const vol = at(`${how}.vol`);
      const dest = at(`${how}.cdp`);
      await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
      let server = await startServer(vol, ['--socket', at(`${how}.sock`), '--journal'], locks);
      expect((await runWriter(server.info.uri, ['--count', '60', '--seed', '1', '--aligned'])).code).toBe(0);
      await cli(['protect', vol, '--to', dest, '--once'], locks);
      // flushed writes the destination has not had yet
      expect((await runWriter(server.info.uri, ['--count', '60', '--seed', '2', '--aligned', '--flush-every', '1'])).code).toBe(0);
      await server.stop();
      const seg = listSegments(`${vol}.journal`)[0].path;
      if (how === 'emptied') fs.truncateSync(seg, 0);
      else fs.rmSync(seg);
      // killed -9 as it opens the journal: before anything changed, then with the numbering moved on and its marker not written; the next start takes it from there
      for (const step of ['journal-lost', 'journal-lost-skipped']) {
        const killed = await run(process.execPath, [CLI_BIN, 'serve', 'nbd', vol, '--socket', at(`${how}.sock`), '--journal'], { env: { ...env, IMGSTREAM_CRASH_AT: `${step}:${how}.vol` } });
        expect(killed.signal, `${step}: ${killed.stderr}`).toBe('SIGKILL');
      }
      server = await startServer(vol, ['--socket', at(`${how}.sock`), '--journal'], locks);
      // the new journal grows well past the destination's last record
      expect((await runWriter(server.info.uri, ['--count', '150', '--seed', '3', '--aligned'])).code).toBe(0);
      // (said by the start that found it, before the kills; the resync is tracked all the same)
      expect(fs.existsSync(`${vol}.journal/dirty.json`), 'a resync of every block is tracked').toBe(true);
      const r = await cli(['protect', vol, '--to', dest, '--once'], locks);
      expect(r.stdout + r.stderr).toMatch(/resync/);
      await server.stop();
      expect((await exportRaw(dest, `${how}-dest.raw`, 'latest')).equals(await exportRaw(vol, `${how}-src.raw`)), `the destination's newest point is the source: ${r.stdout} ${r.stderr}`).toBe(true);
    }, 120_000);
  }
});
