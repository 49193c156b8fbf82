// mirror abandon on a destination on this machine: refused (busy) while a transfer writes
// it, then, once that transfer is gone (killed -9), drops what it kept and forgets it (a
// first transfer's snapshot on the source too); the next update starts over and makes an
// exact mirror.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, finished, runCli, sha256, spawnCli, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 2048; // 8 MiB
const root = tempDir('imgstream-mirror-abandon-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const hidden = () => fs.readdirSync(root).filter((f) => f.startsWith('.d.vol'));

describe('mirror abandon', () => {
  it('is refused while a transfer runs, then drops the partial transfer; the next update starts over', async () => {
    writeImage(at('img'), BLOCKS, BS, 8, 0.1);
    await setupOk(['volume', 'create', at('s.vol'), '--size', `${(BLOCKS * BS) >> 20}M`], { env });
    await setupOk(['volume', 'import', at('s.vol'), '--from', at('img')], { env });
    const child = spawnCli(['mirror', 'update', at('s.vol'), '--to', at('d.vol'), '--limit-rate', '1M'], { env });
    const ended = finished(child, 60_000);
    const until = Date.now() + 20_000;
    while (!fs.existsSync(at('.d.vol.mirror-transfer')) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    const busy = runCli(['mirror', 'abandon', at('s.vol'), '--to', at('d.vol')], { env });
    expect(busy.code, busy.stderr).toBe(7);
    expect(busy.stderr.trim().split('\n')).toHaveLength(1);
    expect(hidden()).toContain('.d.vol.mirror-new');
    child.kill('SIGKILL');
    await ended;

    const snapshots = () => cliJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', at('s.vol'), '--json'], { env }).snapshots.map((x) => x.name);
    const [taken] = snapshots();
    expect(taken).toMatch(/^mirror\.[0-9a-f]{8}\.\d+$/);
    const r = cliJson<{ freedBytes: number; files: string[]; snapshot?: string }>(['mirror', 'abandon', at('s.vol'), '--to', at('d.vol'), '--json'], { env });
    expect(r.files).toEqual(expect.arrayContaining(['.d.vol.mirror-new', '.d.vol.mirror-transfer']));
    expect(r.freedBytes).toBeGreaterThan(0);
    expect(hidden()).toEqual([]);
    // the snapshot the dropped first transfer took held the whole disk on the source: it goes too
    expect(r.snapshot).toBe(taken);
    expect(snapshots()).toEqual([]);
    const rel = cliJson<{ relationships: Array<{ pending: unknown; partial: unknown }> }>(['mirror', 'status', at('s.vol'), '--json'], { env }).relationships[0];
    expect(rel.pending).toBe(null);
    expect(rel.partial).toBe(null);
    expect(cliOk(['mirror', 'abandon', at('s.vol'), '--to', at('d.vol')], { env }).stdout).toMatch(/no stopped transfer/);

    const next = cliJson<{ transfers: Array<{ mode: string; resumedRecords: number }> }>(['mirror', 'update', at('s.vol'), '--to', at('d.vol'), '--json'], { env });
    expect(next.transfers).toHaveLength(1);
    expect(next.transfers[0]).toMatchObject({ mode: 'full', resumedRecords: 0 });
    const exp = (v: string) => sha256(runCli(['volume', 'export', at(v), '--to', '-'], { env }).stdoutBytes);
    expect(exp('d.vol')).toBe(exp('s.vol'));
  }, 60_000);
});
