// An incremental given to restore a second time, through the built CLI: `restore l0 l1
// l1`, or l1 again onto the volume it was restored to. It used to be applied again ("5
// already present", exit 0), and its CP reset the active file system to its top,
// discarding what was written since. Now a volume at the stream's top with nothing
// written since is left as it is (exit 0, a line saying it holds that snapshot already
// and nothing was done), and one that went on since (a later stream restored, writes to
// its active file system) is refused (exit 4, one line), unchanged.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, runCli, sha256File } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { dirEntries, dump, exportShas, expectOneLineError, ok } from '../support/stream-cli.js';

const BS = 4096;
const root = tempDir('imgstream-restore-twice-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 60_000 };
const p = (name: string) => path.join(root, name);
const l = { l0: p('l0'), l1: p('l1'), l2: p('l2') };
let sha: Record<string, string> = {};

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('verify of a stream given twice', () => {
  it('agrees with restore: l0 l1 l1 is a chain (the second passed over), l0 l1 l2 l1 is refused', () => {
    const r = cliJson<{ streams: unknown[]; chains: Array<{ streams: number }> }>(['verify', l.l0, l.l1, l.l1], o);
    expect(r.streams).toHaveLength(3);
    expectOneLineError(runCli(['verify', l.l0, l.l1, l.l2, l.l1], o), 'verify l0 l1 l2 l1', 4, /taken after its base snapshot "s1" that it does not bring/);
  });
});

beforeAll(async () => {
  // snapshots s1, s2, s3 (a few blocks changed between them), dumped at levels 0, 1, 2
  const vol = p('src.vol');
  await setupOk(['volume', 'create', vol, '--size', '1M', '--max-snapshots', '8'], { env });
  const img = randomImage(256, BS, 500);
  for (const s of ['s1', 's2', 's3']) {
    mutate(img, BS, 10, 500 + s.charCodeAt(1));
    fs.writeFileSync(p('src.raw'), img);
    await setupOk(['volume', 'import', vol, '--from', p('src.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', vol, s, '-q'], { env });
  }
  dump(vol, 0, 's1', l.l0, env.IMGSTREAM_CATALOG, [], o);
  dump(vol, 1, 's2', l.l1, env.IMGSTREAM_CATALOG, [], o);
  dump(vol, 2, 's3', l.l2, env.IMGSTREAM_CATALOG, [], o);
  sha = await exportShas(vol, ['s2', 's3'], o);
}, 120_000);

const from = (...streams: string[]) => streams.flatMap((s) => ['--from', s]);

/** A restore that must be refused (exit 4, one line), the destination unchanged (or not created). */
function refused(streams: string[], to: string, pattern: RegExp): void {
  const before = fs.existsSync(to) ? sha256File(to) : null;
  const dirBefore = dirEntries(root);
  const r = runCli(['restore', ...from(...streams), '--to', to], o);
  expectOneLineError(r, `restore ${streams.map((s) => path.basename(s)).join(' ')} -> ${path.basename(to)}`, 4, pattern);
  if (before) expect(sha256File(to), `${to} changed`).toBe(before);
  else expect(fs.existsSync(to), `${to} was created`).toBe(false);
  expect(dirEntries(root)).toEqual(dirBefore);
}

describe('an incremental restored twice', () => {
  it('l0 l1 l1 into a new volume: the second l1 is not applied, and restore says so (exit 0)', async () => {
    const to = p('a.vol');
    const r = runCli(['restore', ...from(l.l0, l.l1, l.l1), '--to', to], o);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/file .*l1: .*a\.vol holds its top snapshot s2 already: not applied again/);
    expect(r.stdout).not.toMatch(/already present/);
    expect(r.stdout).toMatch(/a\.vol: created, 2 stream\(s\) applied, 1 held already, now at s2/);
    expect(await exportShas(to, [null], o)).toEqual({ active: sha.s2 });
  });

  it('l1 again onto the volume at its top: nothing changes, --json lists it as held', () => {
    const to = p('a.vol');
    const before = sha256File(to);
    const r = cliJson<{ streams: unknown[]; held: Array<{ top: string; level: number }> }>(['restore', ...from(l.l1), '--to', to], o);
    expect(r.streams).toEqual([]);
    expect(r.held).toMatchObject([{ top: 's2', level: 1 }]);
    expect(sha256File(to)).toBe(before);
  });

  it('l1 again onto a volume written to since: refused, the writes kept', async () => {
    const to = p('a.vol');
    const img = randomImage(256, BS, 600);
    fs.writeFileSync(p('new.raw'), img);
    ok(['volume', 'import', to, '--from', p('new.raw'), '-q'], o);
    refused([l.l1], to, /a\.vol holds this stream's top snapshot "s2" already, and data was written to it since: applying it again would discard those writes/);
    ok(['volume', 'export', to, '--to', p('a.now'), '-q'], o);
    expect(fs.readFileSync(p('a.now')).equals(img)).toBe(true);
  });

  it('l1 after l2 (l0 l1 l2 l1, or l1 onto a volume at l2): refused, nothing created or changed', async () => {
    refused([l.l0, l.l1, l.l2, l.l1], p('b.vol'), /b\.vol holds this stream's top snapshot "s2" already, and the newer snapshot "s3": applying it again would take the volume back/);
    ok(['restore', ...from(l.l0, l.l1, l.l2), '--to', p('c.vol'), '-q'], o);
    refused([l.l1], p('c.vol'), /newer snapshot "s3"/);
    expect(await exportShas(p('c.vol'), [null], o)).toEqual({ active: sha.s3 });
  });
});

describe('a chain restored again (a cron job retrying restore --from l0 --from l1 …)', () => {
  it('onto the volume it made: every stream passed over, exit 0, nothing done', async () => {
    const to = p('d.vol');
    ok(['restore', ...from(l.l0, l.l1, l.l2), '--to', to, '-q'], o);
    const before = sha256File(to);
    const r = runCli(['restore', ...from(l.l0, l.l1, l.l2), '--to', to], o);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/file .*l0: .*d\.vol holds its top snapshot s1 already: not applied again/);
    expect(r.stdout).toMatch(/d\.vol: 0 stream\(s\) applied, 3 held already, now at s3 \(nothing written since\): nothing done/);
    expect(sha256File(to)).toBe(before);
  });

  it('onto the volume a killed run left at the level 0: the level 0 passed over, the rest applied', async () => {
    const to = p('e.vol');
    ok(['restore', ...from(l.l0), '--to', to, '-q'], o);
    const r = cliJson<{ streams: Array<{ top: string; order: number }>; held: Array<{ top: string; level: number }> }>(['restore', ...from(l.l0, l.l1, l.l2), '--to', to], o);
    expect(r.held).toMatchObject([{ top: 's1', level: 0, order: 1 }]);
    expect(r.streams.map((s) => s.top)).toEqual(['s2', 's3']);
    expect(r.streams.map((s) => s.order)).toEqual([2, 3]);
    expect(await exportShas(to, [null, 's2'], o)).toEqual({ active: sha.s3, s2: sha.s2 });
    // the text lists the streams in the order they came, held or applied
    const again = p('e2.vol');
    ok(['restore', ...from(l.l0), '--to', again, '-q'], o);
    const lines = ok(['restore', ...from(l.l0, l.l1), '--to', again], o).stdout.trim().split('\n');
    expect(lines[0]).toMatch(/file .*l0: .*e2\.vol holds its top snapshot s1 already: not applied again$/);
    expect(lines[1]).toMatch(/^restored level 1 s1 -> s2 from file .*l1: /);
    expect(lines).toHaveLength(3);
  });

  it('a shorter chain onto a volume that went past it, or onto one written to since: refused, unchanged', async () => {
    refused([l.l0, l.l1], p('d.vol'), /d\.vol holds this stream's top snapshot "s2" already, and the newer snapshot "s3": applying it again would take the volume back/);
    const to = p('f.vol');
    ok(['restore', ...from(l.l0), '--to', to, '-q'], o);
    fs.writeFileSync(p('f.raw'), randomImage(256, BS, 700));
    ok(['volume', 'import', to, '--from', p('f.raw'), '-q'], o);
    refused([l.l0], to, /f\.vol holds this stream's top snapshot "s1" already, and data was written to it since/);
  });

  it('a level 0 onto a volume of its source that does not hold its top: refused as before (exit 6), unchanged', () => {
    const to = p('g.vol');
    ok(['restore', ...from(l.l0), '--to', to, '-q'], o);
    ok(['snapshot', 'delete', to, 's1', '-q'], o);
    const before = sha256File(to);
    expectOneLineError(runCli(['restore', ...from(l.l0, l.l1), '--to', to], o), 'restore l0 l1 -> g.vol', 6, /a level 0 full stream restores only into a new volume, and .*g\.vol exists/);
    expect(sha256File(to)).toBe(before);
  });
});
