// A protected volume keeps working as usual while it is served and protected: snapshots,
// a level 0 dump, a mirror update and an export taken while a client writes and the
// shipper ships. Each gives what it gives on any volume, the snapshot arrives at the
// destination, the commands' own temporary snapshots do not, and the destination ends
// equal to the source.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { randomImage } from '../support/images.js';
import { modelAt, runWriter } from '../support/nbd-writer.js';
import { startProtect } from '../support/protect-cli.js';
import { cli, startServer } from '../nbd/support.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const SIZE = 8 << 20;
const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-protect-along-');

describe.skipIf(missing.length > 0)(`a protected volume alongside other commands${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('takes snapshots, dumps, mirror updates and exports while served and protected', async () => {
    const vol = at('a.vol');
    const dest = at('a.cdp');
    const base = randomImage(SIZE / BS, BS, 8, 0.5);
    fs.writeFileSync(at('base.raw'), base);
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    await setupOk(['volume', 'import', vol, '--from', at('base.raw')], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('a.sock'), '--journal'], locks);
    const shipper = startProtect(vol, dest, ['--interval', '250ms'], env);
    await shipper.waitFor((e) => e.event === 'seed');
    const writing = runWriter(server.info.uri, ['--seconds', '3', '--seed', '61', '--pause-ms', '2']);
    await new Promise((r) => setTimeout(r, 500));
    await cli(['snapshot', 'create', vol, 'along'], locks);
    await cli(['dump', vol, '--snapshot', 'along', '--level', '0', '--to', at('along.l0')], locks);
    await cli(['volume', 'export', `${vol}@along`, '--to', at('along.raw')], locks);
    await cli(['mirror', 'update', vol, '--to', at('m.vol'), '--state', at('mirror.json')], locks);
    await cli(['volume', 'export', vol, '--to', at('mid.raw')], locks);
    const w = await writing;
    expect(w.code, w.stderr).toBe(0);
    await shipper.waitCovered(w.log.at(-1)!.t1, 30_000);
    expect((await shipper.stop()).code).toBe(0);
    await server.stop();

    // the dump restores to the snapshot, byte for byte
    await cli(['restore', '--from', at('along.l0'), '--to', at('r.vol')], locks);
    await cli(['volume', 'export', `${at('r.vol')}@along`, '--to', at('r.raw')], locks);
    expect(fs.readFileSync(at('r.raw')).equals(fs.readFileSync(at('along.raw')))).toBe(true);
    // the mirror holds a consistent state of the source
    await cli(['volume', 'check', at('m.vol')], locks);
    // the destination: the user's snapshot arrived, the commands' temporary ones did not, and it ends at the source's disk
    const st = JSON.parse((await cli(['protect', 'status', dest, '--json', '--points'], locks)).stdout) as { window: { end: string }; points: Array<{ time: string; snapshots: string[] }> };
    const snaps = st.points.flatMap((p) => p.snapshots);
    expect(snaps).toContain('along');
    expect(snaps.filter((n) => n !== 'along'), 'only snapshots the user took, and the mirror\'s own').toEqual(snaps.filter((n) => n !== 'along' && /mirror/.test(n)));
    const final = modelAt(base, w.log, Infinity)!;
    await cli(['volume', 'export', dest, '--as-of', st.window.end, '--to', at('end.raw')], locks);
    expect(fs.readFileSync(at('end.raw')).equals(final)).toBe(true);
    // the snapshot's recovery point is the snapshot's disk
    const along = st.points.find((p) => p.snapshots.includes('along'))!;
    await cli(['volume', 'export', dest, '--as-of', along.time, '--to', at('p.raw')], locks);
    expect(fs.readFileSync(at('p.raw')).equals(fs.readFileSync(at('along.raw')))).toBe(true);
  }, 120_000);
});
