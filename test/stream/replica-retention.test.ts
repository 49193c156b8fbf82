// A replica kept by `restore --as-of` night after night while the source's retention
// deletes old snapshots (a helper found this): once the chain's level 0 snapshot was
// dropped on the replica (deleted on the source, dropped by the next restore), the next
// `--as-of` tried the level 0 again ("restores only into a new volume", exit 6). The
// chain's dumps up to the newest whose top the replica holds are skipped: the same
// --as-of again needs nothing (exit 0), and a later one applies only what is new.
// Differential dumps (level 1 after level 1, each on the level 0) with retention: the
// replica holds mon and tue, the source deleted tue and dumped wed at level 1 on mon.
// wed's stream was refused ("tue taken after this stream's base"), and deleting tue as the
// hint said was refused again (the active file system held tue's blocks). A snapshot an
// earlier restore brought from the source, which the source deleted before the stream's
// top, is dropped like those before the base; one taken on the replica is still refused,
// and so is a replica written to since its newest snapshot. verify takes such a chain as
// restore does (it refused it, exit 4, saying restore would).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, runCli } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { changesOutsideFreeSpace, dump, exportShas, expectClean, snapshotNames } from '../support/stream-cli.js';

const BS = 4096;
const root = tempDir('imgstream-replica-retention-');
const catalog = path.join(root, 'catalog.json');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: catalog };
const o = { env, timeoutMs: 60_000 };
const p = (name: string) => path.join(root, name);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A night on the source: `changed` blocks of its disk rewritten, then a snapshot `name`. */
function nights(src: string, seed: number, changed: number): (name: string, seed: number) => Promise<void> {
  const img = randomImage(256, BS, seed);
  const raw = p(`${path.basename(src)}.raw`);
  return async (name, nightSeed) => {
    mutate(img, BS, changed, nightSeed);
    fs.writeFileSync(raw, img);
    await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
    await setupOk(['snapshot', 'create', src, name, '-q'], { env });
  };
}

describe('a replica kept by restore --as-of under the source\'s retention', () => {
  it('skips the dumps up to the newest whose top it holds, even when the level 0\'s top was deleted since', async () => {
    const src = p('src.vol');
    const rep = p('rep.vol');
    await setupOk(['volume', 'create', src, '--size', '1M', '--max-snapshots', '8'], { env });
    const night = nights(src, 5, 40);
    type Restored = { streams: Array<{ top: string; dropped: string[] }> };
    const asOf = (snap: string) => runCli(['restore', '--to', rep, '--as-of', snap, '--json'], o);

    await night('mon', 1);
    dump(src, 0, 'mon', p('mon.l0'), catalog, [], o);
    expect(asOf('mon').code).toBe(0);
    await night('tue', 2);
    dump(src, 1, 'tue', p('tue.l1'), catalog, [], o);
    expect((JSON.parse(asOf('tue').stdout) as Restored).streams.map((s) => s.top)).toEqual(['tue']);
    // retention on the source: mon goes; the level 2 drops it on the replica
    await setupOk(['snapshot', 'delete', src, 'mon', '-q'], { env });
    await night('wed', 3);
    dump(src, 2, 'wed', p('wed.l2'), catalog, [], o);
    const wed = JSON.parse(asOf('wed').stdout) as Restored;
    expect(wed.streams.map((s) => [s.top, s.dropped])).toEqual([['wed', ['mon']]]);
    expect(await snapshotNames(rep, o)).toEqual(['tue', 'wed']);
    // the same again: nothing to do (its level 0's top is gone from the replica, and is not tried again)
    const again = runCli(['restore', '--to', rep, '--as-of', 'wed'], o);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/holds wed already .*nothing to restore/);
    // the next night applies only its own dump
    await night('thu', 4);
    dump(src, 3, 'thu', p('thu.l3'), catalog, [], o);
    const thu = cliJson<Restored>(['restore', '--to', rep, '--as-of', 'thu', '--json'], o);
    expect(thu.streams.map((s) => s.top)).toEqual(['thu']);
    expect(await exportShas(rep, ['tue', 'wed', 'thu', null], o)).toEqual(await exportShas(src, ['tue', 'wed', 'thu', null], o));
    await expectClean(rep, o);
  });

  it('differential level 1s: a snapshot an earlier restore brought and the source deleted since is dropped, the replica exact', async () => {
    const src = p('diff.vol');
    await setupOk(['volume', 'create', src, '--size', '1M', '--volume-size', '4M', '--max-snapshots', '8'], { env });
    const night = nights(src, 9, 120);
    const cat = p('diff-catalog.json');
    await night('mon', 11);
    dump(src, 0, 'mon', p('d.mon.l0'), cat, [], o);
    await night('tue', 12);
    dump(src, 1, 'tue', p('d.tue.l1'), cat, [], o);
    const rep = p('diff-rep.vol');
    expect(runCli(['restore', '--from', p('d.mon.l0'), '--from', p('d.tue.l1'), '--to', rep, '-q'], o).code).toBe(0);
    // the replica as it is now, for the refusals below
    fs.copyFileSync(rep, p('diff-own.vol'));
    fs.copyFileSync(rep, p('diff-written.vol'));
    // retention deletes tue; the next nights' writes reuse its blocks; wed is a level 1 on mon
    await setupOk(['snapshot', 'delete', src, 'tue', '-q'], { env });
    await night('wed', 13);
    await night('wed2', 14);
    await setupOk(['snapshot', 'delete', src, 'wed2', '-q'], { env });
    const wed = dump(src, 1, 'wed', p('d.wed.l1'), cat, [], o);
    expect(wed.level).toBe(1);
    const r = runCli(['restore', '--from', p('d.wed.l1'), '--to', rep, '--json'], o);
    expect(r.code, r.stderr).toBe(0);
    const json = JSON.parse(r.stdout) as { streams: Array<{ dropped: string[]; stagedBlocks: number }> };
    expect(json.streams[0].dropped).toEqual(['tue']);
    expect(await snapshotNames(rep, o)).toEqual(['mon', 'wed']);
    // verify takes the chain as restore does (it refused it: "restore would refuse it there", exit 4); wed before tue it refuses
    const chain = runCli(['verify', p('d.mon.l0'), p('d.tue.l1'), p('d.wed.l1')], o);
    expect(chain.code, chain.stderr).toBe(0);
    expect(chain.stdout).toMatch(/3 stream\(s\) verified/);
    const swapped = runCli(['verify', p('d.mon.l0'), p('d.wed.l1'), p('d.tue.l1')], o);
    expect(swapped.code).toBe(4);
    expect(swapped.stderr).toMatch(/d\.tue\.l1: the streams before it bring snapshot "wed"/);
    const want = await exportShas(src, ['mon', 'wed'], o);
    expect(await exportShas(rep, ['mon', 'wed', null], o)).toEqual({ ...want, active: want.wed });
    await expectClean(rep, o);
    // a snapshot taken on the replica is its own: still refused, nothing changed
    await setupOk(['snapshot', 'create', p('diff-own.vol'), 'mine', '-q'], { env });
    const own = fs.readFileSync(p('diff-own.vol'));
    const refused = runCli(['restore', '--from', p('d.wed.l1'), '--to', p('diff-own.vol')], o);
    expect(refused.code, refused.stderr).toBe(4);
    expect(refused.stderr).toMatch(/"mine" taken after this stream's base snapshot "mon"/);
    expect(fs.readFileSync(p('diff-own.vol')).equals(own)).toBe(true);
    // a replica written to since its newest snapshot: its data is not overwritten
    fs.writeFileSync(p('other.raw'), randomImage(256, BS, 99));
    await setupOk(['volume', 'import', p('diff-written.vol'), '--from', p('other.raw'), '-q'], { env });
    const written = fs.readFileSync(p('diff-written.vol'));
    const r2 = runCli(['restore', '--from', p('d.wed.l1'), '--to', p('diff-written.vol')], o);
    expect(r2.code, r2.stderr).toBe(4);
    expect(r2.stderr).toMatch(/diff-written\.vol changed since its newest snapshot "tue" \(written to, or a newer snapshot deleted\): the stream would discard that/);
    expect(changesOutsideFreeSpace(written, p('diff-written.vol')).violations, 'a refused restore touched what the last CP holds').toEqual([]);
    expect(await snapshotNames(p('diff-written.vol'), o)).toEqual(['mon', 'tue']);
  });
});

