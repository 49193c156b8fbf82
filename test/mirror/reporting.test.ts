// What mirror update and mirror status report: a resumed run's two transfers each on its
// own (text, --json and status), a 0-block update as up to date, and status per volume
// file (a mirror and its cascade hop show their own destinations, not the source's).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, finished, spawnCli, writeImage } from '../support/cli.js';
import { mutate, tempDir } from '../support/images.js';
import { inProcessJson, inProcessOk, setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 2048; // 8 MiB
const root = tempDir('imgstream-mirror-report-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const at = (f: string) => path.join(root, f);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface Transfer {
  mode: string;
  blocks: number;
  planBlocks: number;
  bytes: number;
  totalBytes: number;
  resumedRecords: number;
  resumedTransfer: boolean;
  upToDate: boolean;
}
interface Status {
  relationships: Array<{ volume: { path: string }; destination: string; recent: Array<{ mode: string; blocks: number; bytes: number; totalBytes: number; resumedRecords: number }> }>;
}

describe('mirror reporting', () => {
  it('reports each transfer of a resumed run, and status keeps both', async () => {
    const imgFile = at('img');
    const img = writeImage(imgFile, BLOCKS, BS, 5, 0.1);
    await setupOk(['volume', 'create', at('src.vol'), '--size', `${(BLOCKS * BS) >> 20}M`], { env });
    await setupOk(['volume', 'import', at('src.vol'), '--from', imgFile], { env });
    // a first transfer, killed once it has delivered something
    const child = spawnCli(['mirror', 'update', at('src.vol'), '--to', at('dest.vol'), '--limit-rate', '2M'], { env });
    const done = finished(child, 60_000);
    const end = Date.now() + 20_000;
    while (!fs.existsSync(at('.dest.vol.mirror-transfer')) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
    child.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    // the source changes meanwhile: the next run finishes the old transfer, then sends the change
    mutate(img, BS, 100, 9);
    fs.writeFileSync(imgFile, img);
    await setupOk(['volume', 'import', at('src.vol'), '--from', imgFile], { env });
    const text = cliOk(['mirror', 'update', at('src.vol'), '--to', at('dest.vol')], { env }).stdout.trim().split('\n');
    expect(text.length).toBe(2);
    expect(text[0]).toMatch(/finished the full transfer to mirror\.\S+\.1: \d+ blocks, .* sent.*, resumed after \d+ records/);
    expect(text[1]).toMatch(/: moa transfer to mirror\.\S+\.2: \d+ blocks/);

    // the same with --json; this time the first attempt is stopped (SIGTERM to mirror start), so it counts its bytes
    const child2 = spawnCli(['mirror', 'start', at('src.vol'), '--to', at('dest2.vol'), '--limit-rate', '2M', '--every', '1h'], { env });
    const done2 = finished(child2, 60_000);
    while (!fs.existsSync(at('.dest2.vol.mirror-transfer')) && Date.now() < end + 20_000) await new Promise((r) => setTimeout(r, 50));
    child2.kill('SIGTERM');
    expect((await done2).code).toBe(0);
    mutate(img, BS, 100, 10);
    fs.writeFileSync(imgFile, img);
    await setupOk(['volume', 'import', at('src.vol'), '--from', imgFile], { env });
    const run = cliJson<Transfer & { transfers: Transfer[] }>(['mirror', 'update', at('src.vol'), '--to', at('dest2.vol'), '--json'], { env });
    expect(run.transfers.map((t) => t.mode)).toEqual(['full', 'moa']);
    const [full, moa] = run.transfers;
    expect(full.resumedTransfer).toBe(true);
    expect(full.resumedRecords).toBeGreaterThan(0);
    expect(full.planBlocks).toBeGreaterThan(1500);
    expect(full.blocks).toBeLessThan(full.planBlocks); // what this run sent, not the resumed part
    expect(full.totalBytes).toBeGreaterThan(full.bytes); // the killed attempt's bytes count too
    expect(moa.resumedRecords).toBe(0);
    expect(moa.blocks).toBeGreaterThan(0);
    expect(moa.blocks).toBeLessThan(300);
    expect(run.mode).toBe('moa'); // the top level is the last transfer, not a sum
    expect(run.blocks).toBe(moa.blocks);
    const status = cliJson<Status>(['mirror', 'status', at('src.vol'), '--json'], { env });
    const rel = status.relationships.find((r) => r.destination === at('dest2.vol'))!;
    expect(rel.recent.map((t) => t.mode)).toEqual(['full', 'moa']);
    expect(rel.recent[0].totalBytes).toBe(full.totalBytes);
    expect(rel.recent[0].resumedRecords).toBe(full.resumedRecords);
    expect(rel.recent[1].blocks).toBe(moa.planBlocks);
    const statusText = cliOk(['mirror', 'status', at('src.vol')], { env }).stdout;
    expect(statusText).toMatch(/full to mirror\.\S+: \d+ blocks .*resumed after \d+ records/);
  }, 60_000);

  it('says up to date for an update that moves no block', () => {
    const r = cliJson<Transfer>(['mirror', 'update', at('src.vol'), '--to', at('dest2.vol'), '--json'], { env });
    expect(r.blocks).toBe(0);
    expect(r.upToDate).toBe(true);
    expect(cliOk(['mirror', 'update', at('src.vol'), '--to', at('dest2.vol')], { env }).stdout).toMatch(/is up to date/);
  });

  it('shows each volume file its own destinations: source, mirror, cascade hop', async () => {
    cliOk(['mirror', 'update', at('dest2.vol'), '--to', at('hop.vol')], { env });
    // the same --json status, per volume: run here (status --json of src.vol and hop.vol runs as a process above and below)
    const dests = async (vol: string) => (await inProcessJson<Status>(['mirror', 'status', at(vol)], { env })).relationships.map((r) => r.destination).sort();
    expect(await dests('src.vol')).toEqual([at('dest.vol'), at('dest2.vol')]);
    expect(await dests('dest2.vol')).toEqual([at('hop.vol')]);
    expect(await dests('hop.vol')).toEqual([]);
    // a mirror with no destinations of its own shows what feeds it, from its source's record
    const hop = cliJson<Status & { mirrorOf?: Status['relationships'] }>(['mirror', 'status', at('hop.vol'), '--json'], { env });
    expect(hop.mirrorOf?.map((r) => [r.volume.path, r.destination])).toEqual([[at('dest2.vol'), at('hop.vol')]]);
    const said = cliOk(['mirror', 'status', at('hop.vol')], { env }).stdout.split('\n');
    expect(said[0]).toBe(`${at('hop.vol')}: a mirror destination, fed by ${at('dest2.vol')}:`);
    expect(said[1]).toMatch(new RegExp(`^${at('hop.vol').replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}  idle  last `));
    // a volume that is neither source nor mirror
    expect(cliOk(['mirror', 'status', at('src.vol')], { env: { ...env, IMGSTREAM_MIRROR_STATE: at('other-state.json') } }).stdout).toMatch(/no mirror relationships \(start one with/);
  });

  it('shows a destination deleted since as missing, and the next update makes a full copy there', async () => {
    fs.rmSync(at('hop.vol'));
    const st = cliJson<{ relationships: Array<{ destination: string; state: string }> }>(['mirror', 'status', at('dest2.vol')], { env });
    expect(st.relationships.map((r) => [r.destination, r.state])).toEqual([[at('hop.vol'), 'missing']]);
    const said = cliOk(['mirror', 'status', at('dest2.vol')], { env }).stdout;
    expect(said).toMatch(/ {2}missing {2}last /);
    expect(said).toContain(`${at('hop.vol')} is gone (deleted or moved): the next update makes a full copy there`);
    const t = cliJson<Transfer>(['mirror', 'update', at('dest2.vol'), '--to', at('hop.vol')], { env });
    expect(t.mode).toBe('full');
    expect(t.blocks).toBeGreaterThan(0);
    for (const v of ['dest2', 'hop']) await inProcessOk(['volume', 'export', at(`${v}.vol`), '--to', at(`${v}.raw`)], { env });
    expect(fs.readFileSync(at('hop.raw')).equals(fs.readFileSync(at('dest2.raw'))), 'the new copy holds the source').toBe(true);
    expect((await inProcessJson<{ relationships: Array<{ state: string }> }>(['mirror', 'status', at('dest2.vol')], { env })).relationships.map((r) => r.state)).toEqual(['idle']);
  });
});
