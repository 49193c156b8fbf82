// Continuous protection end to end, as a user runs it: a volume served with --journal, a
// real NBD client (libnbd) making random writes, overwrites, zeroes and trims and logging
// each acknowledged request with its time, `imgstream protect` shipping the journal to a
// destination directory, a snapshot taken on the source meanwhile. Then the disk as of
// 30+ random moments of the window, exported from the destination, must equal the
// model's disk at the last interval boundary before that moment, byte for byte.
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { journalTestDir, journalTestMissing } from '../support/journal-tests.js';
import { rng, randomImage } from '../support/images.js';
import { modelAt, runWriter, type LoggedOp } from '../support/nbd-writer.js';
import { startProtect } from '../support/protect-cli.js';
import { cli, startServer } from '../nbd/support.js';
import { asOfBytes } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const SIZE = 8 << 20;
const INTERVAL_MS = 250;
const missing = journalTestMissing();
const { locks, at, env } = journalTestDir('imgstream-protect-');

interface Status {
  window: { start: string; end: string };
  points: Array<{ seq: number; time: string; kind: string; snapshots: string[] }>;
}

async function status(dest: string): Promise<Status> {
  return JSON.parse((await cli(['protect', 'status', dest, '--json', '--points'], locks)).stdout) as Status;
}

/** Exports the destination's disk as of `t` (ms). */
async function exportAsOf(dest: string, t: number, out: string): Promise<Buffer> {
  await cli(['volume', 'export', dest, '--as-of', new Date(t).toISOString(), '--to', out, '--force'], locks);
  return fs.readFileSync(out);
}

/** Picks `n` random moments in [start, end] whose last boundary has no request in flight across it; checks each. */
export async function checkMoments(dest: string, base: Buffer, log: LoggedOp[], n: number, seed: number, intervalMs: number): Promise<number> {
  const st = await status(dest);
  const start = Date.parse(st.window.start);
  const end = Date.parse(st.window.end);
  const random = rng(seed);
  const points = st.points.map((p) => Date.parse(p.time));
  // every point is the seed, a multiple of the interval, or a snapshot taken on the source
  for (const p of st.points.slice(1)) if (p.snapshots.length === 0) expect(Date.parse(p.time) % intervalMs, `point ${p.time}`).toBe(0);
  let checked = 0;
  for (let attempt = 0; attempt < n * 6 && checked < n; attempt++) {
    const t = start + Math.floor(random() * (end - start + 1));
    // the recovery point for t: the end of the last interval at or before t (a boundary, a snapshot, or the seed)
    const boundary = Math.max(...points.filter((p) => p <= t));
    const want = modelAt(base, log, boundary);
    if (want === null) continue; // a request straddles the boundary: either answer is right
    // the first few as the command does it, the rest in this process (the same call, no process each)
    const got = checked < 5 ? await exportAsOf(dest, t, at('asof.raw')) : await asOfBytes(dest, new Date(t).toISOString(), env);
    expect(got.equals(want), `as of ${new Date(t).toISOString()} (boundary ${new Date(boundary).toISOString()})`).toBe(true);
    checked++;
  }
  return checked;
}

describe.skipIf(missing.length > 0)(`continuous protection with a real client${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('rebuilds the disk exactly as of 30 random moments, and a source snapshot arrives as one', async () => {
    const vol = at('p.vol');
    const dest = at('p.cdp');
    const base = randomImage(SIZE / BS, BS, 77, 0.5);
    fs.writeFileSync(at('base.raw'), base);
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    await setupOk(['volume', 'import', vol, '--from', at('base.raw')], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('p.sock'), '--journal'], locks);
    const shipper = startProtect(vol, dest, ['--interval', `${INTERVAL_MS}ms`, '--keep', '1h'], env);
    await shipper.waitFor((e) => e.event === 'seed');
    const first = await runWriter(server.info.uri, ['--seconds', '2', '--seed', '21', '--pause-ms', '3']);
    expect(first.code, first.stderr).toBe(0);
    await cli(['snapshot', 'create', vol, 'mid'], locks);
    const second = await runWriter(server.info.uri, ['--seconds', '2', '--seed', '22', '--pause-ms', '3']);
    expect(second.code, second.stderr).toBe(0);
    const lastAck = second.log.at(-1)!.t1;
    await shipper.waitCovered(lastAck, 60_000);
    const stopped = await shipper.stop();
    expect(stopped.code, stopped.stderr).toBe(0);
    await server.stop();

    const seed = shipper.events.find((e) => e.event === 'seed')!;
    expect(seed.blocks, 'the seed carries the mapped blocks').toBeGreaterThan(0);
    const intervals = shipper.events.filter((e) => e.event === 'interval');
    expect(intervals.length).toBeGreaterThan(8);
    const st = await status(dest);
    expect(st.points.some((p) => p.snapshots.includes('mid')), 'the source snapshot is a recovery point').toBe(true);
    const log = [...first.log, ...second.log];
    expect(await checkMoments(dest, base, log, 30, 9, INTERVAL_MS)).toBeGreaterThanOrEqual(30);

    // the newest point is the disk the client left, and a restore into a new volume gives it too
    const final = modelAt(base, log, Infinity)!;
    await cli(['restore', '--to', at('r.vol'), '--as-of', st.window.end, '--from', dest], locks);
    await cli(['volume', 'export', at('r.vol'), '--to', at('r.raw')], locks);
    expect(fs.readFileSync(at('r.raw')).equals(final)).toBe(true);
    // and the source is that disk too
    await cli(['volume', 'export', vol, '--to', at('src.raw')], locks);
    expect(fs.readFileSync(at('src.raw')).equals(final)).toBe(true);
  }, 240_000);
});
