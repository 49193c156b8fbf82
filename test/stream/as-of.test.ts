// restore --as-of with a catalog holding dumps of two volumes: a date or a snapshot name
// both volumes match is refused (exit 2, both volumes listed) unless --volume names one
// (by path or uuid prefix); a day alone means the end of that day; a word that is neither
// a snapshot nor a date (V8's Date.parse reads "june7" as 2001-06-07) is refused as such;
// a chain whose stream file is gone takes another dump of the same snapshot, or stops
// before restoring anything, naming the file and the dump.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, runCli } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { inProcessJson, setupOk } from '../support/in-process.js';
import { startServer } from '../nbd/support.js';
import { cliWords, dump, exportShas, expectOneLineError, ok, sh, shellQuote } from '../support/stream-cli.js';

const root = tempDir('imgstream-as-of-');
const catalog = path.join(root, 'catalog.json');
// dates in UTC so "today" is the same for the test and the CLI
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: catalog, TZ: 'UTC' };
const o = { env, timeoutMs: 60_000 };
const p = (name: string) => path.join(root, name);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A volume with snapshots s1, s2 and a level 0 at s1, a level 1 at s2 in the shared catalog. */
async function source(name: string, seed: number): Promise<{ vol: string; uuid: string; sha: Record<string, string> }> {
  const vol = p(`${name}.vol`);
  await setupOk(['volume', 'create', vol, '--size', '1M', '--max-snapshots', '4'], { env });
  const img = randomImage(256, 4096, seed);
  for (const s of ['s1', 's2']) {
    mutate(img, 4096, 10, seed + s.length);
    fs.writeFileSync(p(`${name}.raw`), img);
    await setupOk(['volume', 'import', vol, '--from', p(`${name}.raw`), '-q'], { env });
    await setupOk(['snapshot', 'create', vol, s, '-q'], { env });
  }
  dump(vol, 0, 's1', p(`${name}.l0`), catalog, [], o);
  dump(vol, 1, 's2', p(`${name}.l1`), catalog, [], o);
  return { vol, uuid: (await inProcessJson<{ uuid: string }>(['volume', 'info', vol], { env })).uuid, sha: {} };
}

let A: Awaited<ReturnType<typeof source>>;
let B: Awaited<ReturnType<typeof source>>;
beforeAll(async () => {
  A = await source('a', 1);
  B = await source('b', 2); // dumped last: the newest dump of any volume
  A.sha = await exportShas(A.vol, ['s2'], o);
  B.sha = await exportShas(B.vol, ['s2'], o);
}, 120_000);

const restore = (to: string, ...args: string[]) => runCli(['restore', '--to', p(to), ...args], o);

describe('restore --as-of with two volumes in the catalog', () => {
  it('a date both volumes match is refused naming both, and nothing is created', () => {
    const now = new Date(Date.now() + 60_000).toISOString();
    const line = expectOneLineError(restore('x.vol', '--as-of', now), 'as-of now', 2, /matches dumps of 2 volumes/);
    expect(line).toContain(A.uuid.slice(0, 8));
    expect(line).toContain(B.uuid.slice(0, 8));
    expect(line).toMatch(/--volume/);
    expect(fs.existsSync(p('x.vol'))).toBe(false);
    // a snapshot name both volumes have: the same
    expectOneLineError(restore('x.vol', '--as-of', 's2'), 'as-of s2', 2, /snapshot "s2" matches dumps of 2 volumes/);
  });

  it('--volume PATH or UUID prefix picks the volume, and the chain restores byte for byte', async () => {
    const now = new Date(Date.now() + 60_000).toISOString();
    const ra = cliJson<{ streams: Array<{ top: string }> }>(['restore', '--to', p('a.r.vol'), '--as-of', now, '--volume', A.vol], o);
    expect(ra.streams.map((s) => s.top)).toEqual(['s1', 's2']);
    expect(await exportShas(p('a.r.vol'), ['s2'], o)).toEqual(A.sha);
    const rb = cliJson<{ streams: Array<{ top: string }> }>(['restore', '--to', p('b.r.vol'), '--as-of', 's2', '--volume', B.uuid.slice(0, 8)], o);
    expect(rb.streams.map((s) => s.top)).toEqual(['s1', 's2']);
    expect(await exportShas(p('b.r.vol'), ['s2'], o)).toEqual(B.sha);
    // onto an existing volume, --volume must be that volume
    expectOneLineError(restore('a.r.vol', '--as-of', 's2', '--volume', B.vol), 'as-of onto another volume', 2, /is not the volume at/);
    expectOneLineError(restore('y.vol', '--as-of', 's2', '--volume', 'ffffffff'), 'unknown volume', 3, /no dumps of volume "ffffffff"/);
  });

  it('a file the catalog points to that now holds another dump is refused, never restored in its place', async () => {
    // its own volume and catalog: the dumps above stay as they are
    const cat = p('replaced.json');
    const oc = { env: { ...env, IMGSTREAM_CATALOG: cat }, timeoutMs: 60_000 };
    const vol = p('r.vol');
    await setupOk(['volume', 'create', vol, '--size', '1M', '--max-snapshots', '6'], { env: oc.env });
    const img = randomImage(256, 4096, 9);
    for (const s of ['s0', 's1', 's3']) {
      mutate(img, 4096, 10, s.length + 40);
      fs.writeFileSync(p('r.raw'), img);
      await setupOk(['volume', 'import', vol, '--from', p('r.raw'), '-q'], { env: oc.env });
      await setupOk(['snapshot', 'create', vol, s, '-q'], { env: oc.env });
    }
    dump(vol, 0, 's0', p('r.l0'), cat, [], oc);
    dump(vol, 1, 's1', p('r.l1'), cat, [], oc);
    // the s1 file copied aside, then the same path overwritten with a level 1 at s3: the
    // catalog forgets the s1 dump there (no later restore takes s3 for s1)
    fs.copyFileSync(p('r.l1'), p('r-s1.copy'));
    dump(vol, 1, 's3', p('r.l1'), cat, ['--force'], oc);
    const records = (JSON.parse(fs.readFileSync(cat, 'utf8')) as { dumps: Array<{ top: { name: string } }> }).dumps.map((d) => d.top.name);
    expect(records).toEqual(['s0', 's3']);
    expectOneLineError(runCli(['restore', '--to', p('rs1.vol'), '--as-of', 's1'], oc), 'as-of a dump replaced on its medium', 3, /no dump in the catalog has top snapshot "s1"/);
    // the file replaced behind the catalog's back: it holds the s1 dump, the catalog says s3
    fs.copyFileSync(p('r-s1.copy'), p('r.l1'));
    const line = expectOneLineError(runCli(['restore', '--to', p('rs3.vol'), '--as-of', 's3'], oc), 'as-of a file replaced behind the catalog', 3, /holds dump \w+ \(top snapshot "s1"\), not dump \w+ \(top snapshot "s3"\) that the catalog records there/);
    expect(line).toContain(p('r.l1'));
    expect(fs.existsSync(p('rs1.vol')) || fs.existsSync(p('rs3.vol'))).toBe(false);
  });

  it('a chain whose middle stream file is gone takes another dump of the same snapshot, or stops before restoring anything, naming the dump', async () => {
    const cat = p('gone.json');
    const oc = { env: { ...env, IMGSTREAM_CATALOG: cat }, timeoutMs: 60_000 };
    const vol = p('g.vol');
    await setupOk(['volume', 'create', vol, '--size', '1M', '--max-snapshots', '6'], { env: oc.env });
    const img = randomImage(256, 4096, 21);
    for (const s of ['s0', 's1', 's2']) {
      mutate(img, 4096, 10, s.length + 60);
      fs.writeFileSync(p('g.raw'), img);
      await setupOk(['volume', 'import', vol, '--from', p('g.raw'), '-q'], { env: oc.env });
      await setupOk(['snapshot', 'create', vol, s, '-q'], { env: oc.env });
    }
    dump(vol, 0, 's0', p('g.l0'), cat, [], oc);
    const first = dump(vol, 1, 's1', p('g.l1'), cat, [], oc);
    const again = dump(vol, 1, 's1', p('g.l1.again'), cat, [], oc); // the nightly job run twice
    dump(vol, 2, 's2', p('g.l2'), cat, [], oc);
    const sha = await exportShas(vol, ['s2'], oc);
    // the newer copy deleted: the older one of the same snapshot is taken
    fs.rmSync(p('g.l1.again'));
    const r = cliJson<{ streams: Array<{ streamId: string }> }>(['restore', '--to', p('g1.vol'), '--as-of', 's2'], oc);
    expect(r.streams.map((x) => x.streamId)[1]).toBe(first.streamId);
    expect(await exportShas(p('g1.vol'), ['s2'], oc)).toEqual(sha);
    // both moved away: refused before the level 0 is restored, naming the newest and its dump
    fs.renameSync(p('g.l1'), p('g.l1.moved'));
    const r2 = runCli(['restore', '--to', p('g2.vol'), '--as-of', 's2'], oc);
    const line = expectOneLineError(r2, 'as-of with a missing middle stream', 3, /g\.l1\.again: no such file: the catalog records dump (\w{8}) \(level 1, top snapshot "s1"\) there, which the chain as of s2 needs \(if it was moved, record it where it is now: imgstream catalog rebuild --from NEWPLACE\)/);
    expect(line).toContain(again.streamId.slice(0, 8));
    expect(r2.stdout).toBe('');
    expect(fs.readdirSync(root).filter((n) => n.includes('g2.vol'))).toEqual([]);
    // recorded where it is now, as the hint says: the chain restores again
    ok(['catalog', 'rebuild', '--from', p('g.l1.moved')], oc);
    ok(['restore', '--to', p('g3.vol'), '--as-of', 's2'], oc);
    expect(await exportShas(p('g3.vol'), ['s2'], oc)).toEqual(sha);
    // a newer level 0 of s2 sent down a pipe (to a replica through ssh) cannot be read back:
    // the chain of files to s2 is taken (it was refused, exit 3, "written to a pipe")
    const piped = await sh(`${cliWords(['dump', vol, '--level', '0', '--snapshot', 's2', '--to', '-', '--catalog', cat])} | cat > ${shellQuote(p('g.piped'))}`, oc);
    expect(piped.code, piped.stderr).toBe(0);
    const r3 = cliJson<{ streams: Array<{ level: number }> }>(['restore', '--to', p('g4.vol'), '--as-of', 's2'], oc);
    expect(r3.streams.map((x) => x.level)).toEqual([0, 1, 2]);
    expect(await exportShas(p('g4.vol'), ['s2'], oc)).toEqual(sha);
  });

  it('a day alone means the end of that day; dates and names are read strictly', () => {
    const today = new Date().toISOString().slice(0, 10);
    const r = cliJson<{ streams: Array<{ top: string }> }>(['restore', '--to', p('today.vol'), '--as-of', today, '--volume', A.vol], o);
    expect(r.streams.map((s) => s.top)).toEqual(['s1', 's2']);
    expectOneLineError(restore('z.vol', '--as-of', '2020-01-01', '--volume', A.vol), 'before any dump', 3, /no dump in the catalog was taken by 2020-01-01/);
    expectOneLineError(restore('z.vol', '--as-of', 'june7', '--volume', A.vol), 'not a date', 3, /no dump .* top snapshot "june7", and it is not a date/);
    expectOneLineError(restore('z.vol', '--as-of', '2026-02-30', '--volume', A.vol), 'no such day', 3, /not a date/);
    expectOneLineError(restore('z.vol', '--as-of', '2026-12-04T16:17:00-25:00', '--volume', A.vol), 'no such zone offset', 3, /not a date/);
    expectOneLineError(restore('z.vol', '--as-of', '2026-12-04T16:17:00+05:60', '--volume', A.vol), 'no such zone offset', 3, /not a date/);
    expect(fs.existsSync(p('z.vol'))).toBe(false);
  });

  it('a date means the newest state dumped by then, not the newest run: an older snapshot dumped again (a copy for offsite) does not win', async () => {
    const C = await source('c', 3);
    C.sha = await exportShas(C.vol, ['s2'], o);
    dump(C.vol, 0, 's1', p('c.offsite.l0'), catalog, [], o); // run after the level 1 at s2
    const now = new Date(Date.now() + 60_000).toISOString();
    const r = cliJson<{ streams: Array<{ top: string }> }>(['restore', '--to', p('c.r.vol'), '--as-of', now, '--volume', C.vol], o);
    expect(r.streams.map((s) => s.top)).toEqual(['s1', 's2']);
    expect(await exportShas(p('c.r.vol'), ['s2'], o)).toEqual(C.sha);
  });

  it('a date chooses the state, the newest one dumped by then; that state is read from any dump of it, one taken after the date too (a level 0 of it for offsite: one stream, the same blocks)', async () => {
    const K = await source('k', 14);
    K.sha = await exportShas(K.vol, ['s2'], o);
    const mid = new Date().toISOString(); // after the level 1 at s2, before the offsite level 0 of s2
    await new Promise((r) => setTimeout(r, 50));
    dump(K.vol, 0, 's2', p('k.offsite.l0'), catalog, [], o);
    const r = cliJson<{ streams: Array<{ stream: string }> }>(['restore', '--to', p('k.r.vol'), '--as-of', mid, '--volume', K.vol], o);
    expect(r.streams.map((x) => x.stream)).toEqual([`file ${p('k.offsite.l0')}`]);
    expect(await exportShas(p('k.r.vol'), ['s2'], o)).toEqual(K.sha);
    // with it gone, the chain taken by then restores the same state
    fs.rmSync(p('k.offsite.l0'));
    const again = cliJson<{ streams: Array<{ stream: string }> }>(['restore', '--to', p('k.r2.vol'), '--as-of', mid, '--volume', K.vol], o);
    expect(again.streams.map((x) => x.stream)).toEqual([`file ${p('k.l0')}`, `file ${p('k.l1')}`]);
    expect(await exportShas(p('k.r2.vol'), ['s2'], o)).toEqual(K.sha);
  });

  it('onto a replica, of two dumps of one snapshot the one going on from what it holds: not a level 0 taken later for offsite', async () => {
    const E = await source('e', 5);
    ok(['restore', '--to', p('e.r.vol'), '--as-of', 's2', '--volume', E.vol], o);
    const img = randomImage(256, 4096, 55);
    fs.writeFileSync(p('e.raw'), img);
    await setupOk(['volume', 'import', E.vol, '--from', p('e.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', E.vol, 's3', '-q'], { env });
    dump(E.vol, 2, 's3', p('e.l2'), catalog, [], o);
    dump(E.vol, 0, 's3', p('e.offsite.l0'), catalog, [], o); // the newest dump of s3
    const r = cliJson<{ streams: Array<{ stream: string; top: string }> }>(['restore', '--to', p('e.r.vol'), '--as-of', 's3'], o);
    expect(r.streams.map((x) => x.stream)).toEqual([`file ${p('e.l2')}`]);
    expect(await exportShas(p('e.r.vol'), ['s3'], o)).toEqual(await exportShas(E.vol, ['s3'], o));
    // into a new path the newest dump of it, as before: the level 0
    const fresh = cliJson<{ streams: Array<{ stream: string }> }>(['restore', '--to', p('e.new.vol'), '--as-of', 's3', '--volume', E.vol], o);
    expect(fresh.streams.map((x) => x.stream)).toEqual([`file ${p('e.offsite.l0')}`]);
  });

  it('a level 1 whose base level 0 is gone goes on from another dump of the base\'s state: a level 1 of it over the older level 0', async () => {
    const F = await source('f', 6);
    dump(F.vol, 0, 's2', p('f.s2.l0'), catalog, [], o); // the base the next level 1 is taken over
    const img = randomImage(256, 4096, 66);
    fs.writeFileSync(p('f.raw'), img);
    await setupOk(['volume', 'import', F.vol, '--from', p('f.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', F.vol, 's3', '-q'], { env });
    dump(F.vol, 1, 's3', p('f.s3.l1'), catalog, [], o);
    fs.rmSync(p('f.s2.l0'));
    const r = cliJson<{ streams: Array<{ stream: string }> }>(['restore', '--to', p('f.r.vol'), '--as-of', 's3', '--volume', F.vol], o);
    expect(r.streams.map((x) => x.stream)).toEqual([`file ${p('f.l0')}`, `file ${p('f.l1')}`, `file ${p('f.s3.l1')}`]);
    expect(await exportShas(p('f.r.vol'), ['s3'], o)).toEqual(await exportShas(F.vol, ['s3'], o));
  });

  it('--volume names a volume that is being served: its uuid is read without its lock', async () => {
    const server = await startServer(A.vol, ['--socket', p('a.sock')], env.IMGSTREAM_LOCK_DIR);
    try {
      ok(['restore', '--to', p('a.served.vol'), '--as-of', 's2', '--volume', A.vol], o);
    } finally {
      await server.stop();
    }
    expect(await exportShas(p('a.served.vol'), ['s2'], o)).toEqual(A.sha);
  });

  it('--volume naming one of two copies takes its own dumps before the other copy\'s of the same snapshots', async () => {
    const D = await source('d', 4);
    D.sha = await exportShas(D.vol, ['s2'], o);
    // a copy restored from its dumps (the same uuid and snapshots), dumped later at s2 on its own
    ok(['restore', '--from', p('d.l0'), '--from', p('d.l1'), '--to', p('d2.vol')], o);
    dump(p('d2.vol'), 0, 's2', p('d2.l0'), catalog, [], o);
    type Restored = { streams: Array<{ stream: string; top: string }> };
    const mine = cliJson<Restored>(['restore', '--to', p('d.r.vol'), '--as-of', 's2', '--volume', D.vol], o);
    expect(mine.streams.map((x) => x.stream)).toEqual([`file ${p('d.l0')}`, `file ${p('d.l1')}`]);
    expect(await exportShas(p('d.r.vol'), ['s2'], o)).toEqual(D.sha);
    const theirs = cliJson<Restored>(['restore', '--to', p('d2.r.vol'), '--as-of', 's2', '--volume', p('d2.vol')], o);
    expect(theirs.streams.map((x) => x.stream)).toEqual([`file ${p('d2.l0')}`]);
  });

  it('a dump run with a relative volume path records the absolute one: --volume picks it from anywhere', async () => {
    const cat = p('rel-catalog.json');
    const eo = { env: { ...env, IMGSTREAM_CATALOG: cat }, timeoutMs: 60_000 };
    for (const host of ['hostA', 'hostB']) {
      fs.mkdirSync(p(host));
      const cwd = p(host);
      fs.writeFileSync(p(`${host}/a.raw`), randomImage(256, 4096, host.length + 40 + host.charCodeAt(4)));
      expect(runCli(['volume', 'create', 'vm.vol', '--size', '1M', '-q'], { ...eo, cwd }).code).toBe(0);
      expect(runCli(['volume', 'import', 'vm.vol', '--from', 'a.raw', '-q'], { ...eo, cwd }).code).toBe(0);
      expect(runCli(['dump', 'vm.vol', '--level', '0', '--to', 'full.l0', '-q'], { ...eo, cwd }).code).toBe(0);
    }
    const list = await inProcessJson<{ dumps: Array<{ volume: { path: string } }> }>(['catalog', 'list'], { env: eo.env });
    expect(list.dumps.map((d) => d.volume.path).sort()).toEqual([p('hostA/vm.vol'), p('hostB/vm.vol')]);
    // hostA's volume lost: --volume by its path, relative to here, finds its dumps only
    const want = await exportShas(p('hostA/vm.vol'), [null], o);
    fs.renameSync(p('hostA/vm.vol'), p('hostA/vm.vol.lost'));
    const now = new Date(Date.now() + 60_000).toISOString();
    expect(runCli(['restore', '--to', 'back.vol', '--as-of', now, '--volume', 'hostA/vm.vol', '-q'], { ...eo, cwd: root }).code).toBe(0);
    expect(await exportShas(p('back.vol'), [null], o)).toEqual(want);
  });
});

