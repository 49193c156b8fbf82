// A replica restored from a volume's level 0 shares its uuid and its snapshot ids: a
// snapshot taken on the replica takes the next id, which the source gives its own next
// snapshot too. A dump of the replica recorded in the same catalog used to become the
// source's newest level 0, and the source's next level 1 was planned over the source
// snapshot with the replica's id: really a level 2 over tue, exit 0, recorded with base
// tue, and `restore --as-of` of it failed (its chain started at the replica's dump).
// Catalog records now name snapshots by identity (id, CP generation, creation time), so
// a replica's dumps take no part in its source's levels or chains.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, runCli, sha256File, stderrLines } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { expectOneLineError, refused } from '../support/stream-cli.js';

const root = tempDir('imgstream-replica-dumps-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 60_000 };
const p = (name: string) => path.join(root, name);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface Listed {
  level: number;
  top: { name: string };
  base: { name: string } | null;
}

describe('replicas restored from a volume\'s dumps', () => {
  it('take no part in the source\'s levels: its next level 1 is over its own level 0, and restores as of its top', async () => {
    const vol = p('v.vol');
    const img = randomImage(256, 4096, 3);
    await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
    const change = async (seed: number, snap: string | null) => {
      mutate(img, 4096, 12, seed);
      fs.writeFileSync(p('v.raw'), img);
      await setupOk(['volume', 'import', vol, '--from', p('v.raw'), '-q'], { env });
      if (snap) await setupOk(['snapshot', 'create', vol, snap, '-q'], { env });
    };
    await change(1, 'mon');
    cliOk(['dump', vol, '--level', '0', '--snapshot', 'mon', '--to', p('mon.l0')], o);
    cliOk(['restore', '--from', p('mon.l0'), '--to', p('rep.vol')], o);
    await change(2, 'tue');
    cliOk(['dump', vol, '--level', '1', '--snapshot', 'tue', '--to', p('tue.l1')], o);
    // the offsite copy: a snapshot and a level 0 of the replica (same uuid, the same next snapshot id as tue)
    await setupOk(['snapshot', 'create', p('rep.vol'), 'offsite1', '-q'], { env });
    cliOk(['dump', p('rep.vol'), '--level', '0', '--snapshot', 'offsite1', '--to', p('rep.l0')], o);
    await change(3, 'wed');
    cliOk(['dump', vol, '--level', '1', '--snapshot', 'wed', '--to', p('wed.l1')], o);

    const listed = cliJson<{ dumps: Listed[] } | Listed[]>(['catalog', 'list', '--json'], o);
    const dumps = Array.isArray(listed) ? listed : listed.dumps;
    const wed = dumps.find((d) => d.top.name === 'wed')!;
    expect(wed).toMatchObject({ level: 1, base: { name: 'mon' } });
    cliOk(['restore', '--to', p('check.vol'), '--as-of', 'wed', '--volume', vol], o);
    cliOk(['volume', 'export', `${vol}@wed`, '--to', p('want.raw')], o);
    cliOk(['volume', 'export', p('check.vol'), '--to', p('got.raw')], o);
    expect(sha256File(p('got.raw'))).toBe(sha256File(p('want.raw')));
  });

  it('a replica whose newest snapshot was deleted: an incremental says the chain cannot go on in place (not to restore lower levels, which fail too)', async () => {
    const vol = p('s.vol');
    const rep = p('srep.vol');
    const img = randomImage(256, 4096, 5);
    await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
    const night = async (seed: number, snap: string, level: number) => {
      mutate(img, 4096, 12, seed);
      fs.writeFileSync(p('s.raw'), img);
      await setupOk(['volume', 'import', vol, '--from', p('s.raw'), '-q'], { env });
      await setupOk(['snapshot', 'create', vol, snap, '-q'], { env });
      cliOk(['dump', vol, '--level', String(level), '--snapshot', snap, '--to', p(`s-${snap}.l${level}`)], o);
    };
    await night(1, 'mon', 0);
    await night(2, 'tue', 1);
    await night(3, 'wed', 2);
    cliOk(['restore', '--to', rep, '--from', p('s-mon.l0'), '--from', p('s-tue.l1'), '--from', p('s-wed.l2')], o);
    await setupOk(['snapshot', 'delete', rep, 'wed', '-q'], { env });
    await night(4, 'thu', 3);
    const before = sha256File(rep);
    const r = runCli(['restore', '--to', rep, '--from', p('s-thu.l3')], o);
    expect(r.code, r.stderr).toBe(4);
    expect(stderrLines(r)).toEqual([
      `imgstream: file ${p('s-thu.l3')}: its base snapshot "wed" is not on ${rep}, which changed since its newest snapshot "tue" (written to, or a newer snapshot deleted): a chain cannot go on in place (restore the chain into a new volume: imgstream restore --to NEW, with its streams or --as-of)`,
    ]);
    expect(sha256File(rep)).toBe(before);
  });

  it('a replica written to and dumped: the source\'s next level builds on its own dumps, and --as-of a date restores the copy --volume names (without it, both copies are named)', async () => {
    // a catalog of its own: a date the other tests' volumes' dumps match is ambiguous for another reason
    const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog-w.json') };
    const o = { env, timeoutMs: 60_000 };
    const vol = p('w.vol');
    const rep = p('wrep.vol');
    const img = randomImage(256, 4096, 7);
    await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
    const put = async (target: string, seed: number) => {
      mutate(img, 4096, 12, seed);
      fs.writeFileSync(p('w.raw'), img);
      await setupOk(['volume', 'import', target, '--from', p('w.raw'), '-q'], { env });
    };
    await put(vol, 1);
    cliOk(['dump', vol, '--level', '0', '--to', p('w.l0')], o);
    await put(vol, 2);
    cliOk(['dump', vol, '--level', '1', '--to', p('w.l1')], o);
    cliOk(['restore', '--to', rep, '--from', p('w.l0'), '--from', p('w.l1')], o);
    cliOk(['volume', 'export', vol, '--to', p('w-source.raw')], o);
    // the replica used (a disaster-recovery test) and backed up on its own
    await put(rep, 3);
    cliOk(['dump', rep, '--level', '1', '--to', p('wrep.l1')], o);
    // the source's level 2 builds on its own level 1
    const plan = cliJson<{ base: string | null }>(['dump', vol, '--level', '2', '--dry-run', '--json'], o);
    expect(plan.base).toMatch(/^dump-l1-/);
    const now = new Date(Date.now() + 1000).toISOString();
    cliOk(['restore', '--to', p('w-asof.vol'), '--as-of', now, '--volume', vol], o);
    cliOk(['volume', 'export', p('w-asof.vol'), '--to', p('w-asof.raw')], o);
    expect(sha256File(p('w-asof.raw'))).toBe(sha256File(p('w-source.raw')));
    const r = runCli(['restore', '--to', p('w-which.vol'), '--as-of', now], o);
    expect(r.code, r.stderr).toBe(2);
    expect(stderrLines(r)).toEqual([expect.stringMatching(new RegExp(`matches dumps of 2 copies of volume [0-9a-f]{8}: .*w\\.vol, .*wrep\\.vol .*\\(name the one you mean with --volume PATH\\)$`))]);
    expect(fs.existsSync(p('w-which.vol'))).toBe(false);
  });

  it('--volume PATH names the volume at that path now: a volume made again at a path once dumped, with a replica dumped too, restores as of its snapshot', async () => {
    // before: --volume v.vol matched the old volume's dumps and the new one's (exit 2), and its uuid matched both copies (exit 2, naming --volume PATH)
    const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog-again.json') };
    const o = { env, timeoutMs: 60_000 };
    const vol = p('again.vol');
    fs.writeFileSync(p('again.raw'), randomImage(256, 4096, 21));
    await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
    await setupOk(['volume', 'import', vol, '--from', p('again.raw'), '-q'], { env });
    cliOk(['dump', vol, '--level', '0', '--to', p('again-old.l0')], o);
    fs.rmSync(vol);
    await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
    await setupOk(['volume', 'import', vol, '--from', p('again.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', vol, 's', '-q'], { env });
    cliOk(['dump', vol, '--level', '0', '--snapshot', 's', '--to', p('again.l0')], o);
    cliOk(['restore', '--from', p('again.l0'), '--to', p('again-rep.vol')], o);
    cliOk(['dump', p('again-rep.vol'), '--level', '0', '--snapshot', 's', '--to', p('again-rep.l0')], o);
    for (const [named, to] of [[vol, 'again-n1.vol'], [p('again-rep.vol'), 'again-n2.vol']]) {
      cliOk(['restore', '--to', p(to), '--as-of', 's', '--volume', named], o);
      cliOk(['volume', 'export', `${p(to)}@s`, '--to', p(`${to}.raw`)], o);
      expect(sha256File(p(`${to}.raw`))).toBe(sha256File(p('again.raw')));
    }
  });

  it("streams of a replica and of its source whose snapshots share an id and a CP generation are told apart by when they were taken: restore and verify refuse the mix (exit 4), never passing one over as held or writing it", async () => {
    // (the source's next snapshot and one taken on the replica get the same id, and here the same generation)
    const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog-x.json') };
    const o = { env, timeoutMs: 60_000 };
    const vol = p('x.vol');
    const rep = p('xrep.vol');
    const img = randomImage(256, 4096, 9);
    fs.writeFileSync(p('x0.raw'), img);
    await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
    await setupOk(['volume', 'import', vol, '--from', p('x0.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', vol, 's0', '-q'], { env });
    cliOk(['dump', vol, '--level', '0', '--snapshot', 's0', '--to', p('x.l0')], o);
    cliOk(['restore', '--from', p('x.l0'), '--to', rep], o);
    await setupOk(['snapshot', 'create', vol, 's1', '-q'], { env });
    mutate(img, 4096, 20, 11);
    fs.writeFileSync(p('xr1.raw'), img);
    await setupOk(['volume', 'import', rep, '--from', p('xr1.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', rep, 's1', '-q'], { env });
    const ident = (v: string) => cliJson<{ snapshots: Array<{ name: string; id: number; generation: number; created: string }> }>(['snapshot', 'list', v, '--json'], o).snapshots.find((x) => x.name === 's1')!;
    const [a, b] = [ident(vol), ident(rep)];
    expect([b.id, b.generation], 'the setup: both s1 have one id and generation').toEqual([a.id, a.generation]);
    expect(b.created).not.toBe(a.created);
    cliOk(['dump', vol, '--level', '1', '--snapshot', 's1', '--to', p('x.l1')], o);
    cliOk(['dump', rep, '--level', '1', '--snapshot', 's1', '--to', p('xr.l1')], o);
    mutate(img, 4096, 8, 12);
    fs.writeFileSync(p('xr2.raw'), img);
    await setupOk(['volume', 'import', rep, '--from', p('xr2.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', rep, 's2', '-q'], { env });
    cliOk(['dump', rep, '--level', '2', '--snapshot', 's2', '--to', p('xr.l2')], o);
    const twoCopies = /: they are two copies' snapshots \(a replica restored from a volume shares its snapshot ids\) \(give one copy's streams in chain order/;

    // the replica's level 1 after the source's: its top is another s1, not one held already
    expectOneLineError(await refused(['restore', '--from', p('x.l0'), '--from', p('x.l1'), '--from', p('xr.l1'), '--to', p('x-mix.vol')], { env }), 'the two level 1s', 4, twoCopies);
    expect(fs.existsSync(p('x-mix.vol'))).toBe(false);
    cliOk(['restore', '--from', p('x.l0'), '--from', p('x.l1'), '--to', p('x-src.vol')], o);
    const before = sha256File(p('x-src.vol'));
    expectOneLineError(await refused(['restore', '--from', p('xr.l1'), '--to', p('x-src.vol')], { env }), "the replica's level 1 onto the source's s1", 4, twoCopies);
    // the replica's level 2 on the source's s1: its base is another copy's
    expectOneLineError(await refused(['restore', '--from', p('xr.l2'), '--to', p('x-src.vol')], { env }), "the replica's level 2 onto the source's s1", 4, /its base snapshot "s1" was taken at .*: they are two copies' snapshots/);
    expect(sha256File(p('x-src.vol')), 'the volume refused onto is unchanged').toBe(before);
    expectOneLineError(await refused(['verify', p('x.l0'), p('x.l1'), p('xr.l1')], { env }), 'verify of the two level 1s', 4, twoCopies);
    expectOneLineError(await refused(['verify', p('x.l0'), p('x.l1'), p('xr.l2')], { env }), "verify of the source's level 1 and the replica's level 2", 4, /its base snapshot "s1" was taken at .*: they are two copies' snapshots/);
    // each copy's own chain restores exactly
    cliOk(['verify', p('x.l0'), p('xr.l1'), p('xr.l2')], o);
    cliOk(['restore', '--from', p('x.l0'), '--from', p('xr.l1'), '--from', p('xr.l2'), '--to', p('x-rep.vol')], o);
    cliOk(['volume', 'export', `${p('x-rep.vol')}@s1`, '--to', p('x-got1.raw')], o);
    cliOk(['volume', 'export', `${p('x-rep.vol')}@s2`, '--to', p('x-got2.raw')], o);
    expect(sha256File(p('x-got1.raw'))).toBe(sha256File(p('xr1.raw')));
    expect(sha256File(p('x-got2.raw'))).toBe(sha256File(p('xr2.raw')));
  });
  it('onto a replica, --as-of reads only the dumps it applies: its level 0 on an object store that cannot be reached is never looked for', async () => {
    // before: the level 0 the replica was restored from was looked for (a HEAD) though the
    // chain passes over it: exit 11 without credentials, 12 with the store down
    const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog-s3.json') };
    const o = { env, timeoutMs: 60_000 };
    const vol = p('o.vol');
    const rep = p('orep.vol');
    const img = randomImage(256, 4096, 31);
    await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
    const change = async (seed: number, snap: string) => {
      mutate(img, 4096, 12, seed);
      fs.writeFileSync(p('o.raw'), img);
      await setupOk(['volume', 'import', vol, '--from', p('o.raw'), '-q'], { env });
      await setupOk(['snapshot', 'create', vol, snap, '-q'], { env });
    };
    await change(1, 's1');
    cliOk(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', p('o.l0')], o);
    cliOk(['restore', '--from', p('o.l0'), '--to', rep], o);
    await change(2, 's2');
    cliOk(['dump', vol, '--level', '1', '--snapshot', 's2', '--to', p('o.l1')], o);
    // the level 0 as if it had gone to an object store: one nothing listens for (port 1)
    const catalog = JSON.parse(fs.readFileSync(env.IMGSTREAM_CATALOG, 'utf8'));
    const l0 = catalog.dumps.find((d: { level: number }) => d.level === 0);
    l0.media = { kind: 's3', location: 's3://nowhere/o.l0', endpoint: 'http://127.0.0.1:1', pathStyle: true };
    fs.writeFileSync(env.IMGSTREAM_CATALOG, JSON.stringify(catalog));
    fs.rmSync(p('o.l0'));
    const r = runCli(['restore', '--to', rep, '--as-of', 's2'], { env: { ...env, AWS_ACCESS_KEY_ID: 'key', AWS_SECRET_ACCESS_KEY: 'secret' }, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(0);
    cliOk(['volume', 'export', `${vol}@s2`, '--to', p('o-want.raw')], o);
    cliOk(['volume', 'export', `${rep}@s2`, '--to', p('o-got.raw')], o);
    expect(sha256File(p('o-got.raw'))).toBe(sha256File(p('o-want.raw')));
  });
  it('--as-of a snapshot only one copy dumped restores that copy\'s dump: a name is ambiguous only when two copies\' dumps have it', async () => {
    // before: every live copy of the uuid counted, exit 2 "matches dumps of 2 copies"
    const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog-only.json') };
    const o = { env, timeoutMs: 60_000 };
    const vol = p('only.vol');
    const copy = p('only-copy.vol');
    fs.writeFileSync(p('only.raw'), randomImage(256, 4096, 41));
    await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
    await setupOk(['volume', 'import', vol, '--from', p('only.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', vol, 's1', '-q'], { env });
    cliOk(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', p('only.l0')], o);
    cliOk(['restore', '--from', p('only.l0'), '--to', copy], o);
    await setupOk(['snapshot', 'create', copy, 'only-on-copy', '-q'], { env });
    cliOk(['dump', copy, '--level', '0', '--snapshot', 'only-on-copy', '--to', p('only-copy.l0')], o);
    for (const [name, to] of [['only-on-copy', 'only-n1.vol'], ['s1', 'only-n2.vol']]) {
      const r = runCli(['restore', '--to', p(to), '--as-of', name], o);
      expect(r.code, r.stderr).toBe(0);
      cliOk(['volume', 'export', `${p(to)}@${name}`, '--to', p(`${to}.raw`)], o);
      expect(sha256File(p(`${to}.raw`))).toBe(sha256File(p('only.raw')));
    }
    // --volume naming the copy that never had it: the other copy's dump is named (it said no dump had that top)
    const other = runCli(['restore', '--to', p('only-n4.vol'), '--volume', vol, '--as-of', 'only-on-copy'], o);
    expect(other.code, other.stderr).toBe(3);
    expect(other.stderr).toContain(`no dump of ${vol} has top snapshot "only-on-copy": the catalog's dump of it is of another copy of the volume (${copy})`);
    expect(fs.existsSync(p('only-n4.vol'))).toBe(false);
    // a date both copies' dumps were taken by names both
    const r = runCli(['restore', '--to', p('only-n3.vol'), '--as-of', new Date(Date.now() + 1000).toISOString()], o);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/matches dumps of 2 copies of volume/);
    // s1 dumped by the copy too (it was restored with it): one snapshot, one state, nothing to choose (it was refused as ambiguous)
    cliOk(['dump', copy, '--level', '0', '--snapshot', 's1', '--to', p('only-copy-s1.l0')], o);
    const same = runCli(['restore', '--to', p('only-n5.vol'), '--as-of', 's1'], o);
    expect(same.code, same.stderr).toBe(0);
    cliOk(['volume', 'export', `${p('only-n5.vol')}@s1`, '--to', p('only-n5.raw')], o);
    expect(sha256File(p('only-n5.raw'))).toBe(sha256File(p('only.raw')));
  });
});
