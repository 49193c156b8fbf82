// The catalog's own faults, found before a dump takes its snapshot or writes its stream:
// a path whose temporary name would pass the 255-byte limit, a path that names a
// directory (or ends in "/"), lies in a directory that does not exist, or is a FIFO
// (reading it waited forever); a catalog of another version (exit 5, as the table says
// for unsupported format versions); and records malformed in any field, refused in one
// line naming the catalog, the record and the field. S3 records with and without the
// store they were written to (older catalogs have none) are read and listed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, hashTree, runCli } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { expectOneLineError } from '../support/stream-cli.js';
import { inProcess, inProcessJson, setupOk, volumeWithSnapshot } from '../support/in-process.js';

const root = tempDir('imgstream-catalog-faults-');
const work = path.join(root, 'work'); // hashed around every refused dump
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (n: string) => path.join(work, n);
const vol = at('v.vol');
const cli = (args: string[], extra: Record<string, string> = {}) => runCli(args, { env: { ...env, ...extra }, timeoutMs: 20_000 });

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  fs.mkdirSync(work, { recursive: true });
  await volumeWithSnapshot(vol, path.join(root, 'v.raw'), env);
  fs.mkdirSync(at('adir'));
  fs.writeFileSync(at('afile'), 'not a directory\n');
  spawnSync('mkfifo', [at('fifo')]);
});

/** Checks that are not what a test is about, run in this process (in-process.ts). */
const check = <T>(args: string[]): Promise<T> => inProcessJson<T>(args, { env });
const snapshots = async (): Promise<string[]> => (await check<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol])).snapshots.map((s) => s.name);

/** A dump (which would take a snapshot) with --catalog CATALOG is refused with `exit`, and nothing changes. */
async function refusedDump(catalog: string, exit: number, pattern: RegExp): Promise<void> {
  const before = hashTree(work);
  const snaps = await snapshots();
  const r = cli(['dump', vol, '--level', '0', '--to', at('never.l0'), '--catalog', catalog]);
  expectOneLineError(r, `dump --catalog ${catalog}`, exit, pattern);
  expect(await snapshots(), 'no snapshot taken').toEqual(snaps);
  expect(hashTree(work), 'nothing written').toEqual(before);
}

describe('the catalog path', () => {
  it('a name near the limit works: the temporary beside it keeps under 255 bytes, nothing is left', async () => {
    const dir = path.join(root, 'long');
    fs.mkdirSync(dir);
    const catalog = path.join(dir, 'c'.repeat(250));
    const r = cliJson<{ level: number; top: string }>(['dump', vol, '--level', '0', '--to', path.join(dir, 'v.l0'), '--catalog', catalog], { env });
    expect(r.level).toBe(0);
    expect((await check<{ dumps: Array<{ top: { name: string } }> }>(['catalog', 'list', '--catalog', catalog])).dumps.map((d) => d.top.name)).toEqual([r.top]);
    expect(fs.readdirSync(dir).sort()).toEqual(['c'.repeat(250), 'v.l0']);
    await setupOk(['snapshot', 'delete', vol, r.top], { env });
  });

  it('a temporary left by a killed catalog writer is removed by the next one', () => {
    const dir = path.join(root, 'stale');
    fs.mkdirSync(dir);
    const dead = spawnSync('true').pid!; // a pid nobody has any more
    fs.writeFileSync(path.join(dir, `.catalog.json.new-${dead}`), '{"half');
    cliOk(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', path.join(dir, 'v.l0'), '--catalog', path.join(dir, 'catalog.json')], { env });
    expect(fs.readdirSync(dir).sort()).toEqual(['catalog.json', 'v.l0']);
  });

  it('the default catalog directory is created on the first record', () => {
    const state = path.join(root, 'state');
    const r = cliJson<{ top: string }>(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', path.join(root, 'default.l0')], { env: { ...env, XDG_STATE_HOME: state, IMGSTREAM_CATALOG: '' } });
    expect(r.top).toBe('s1');
    expect(fs.existsSync(path.join(state, 'imgstream', 'catalog.json'))).toBe(true);
  });

  it('a name too long for the catalog and its backup logs is refused before the dump', () => refusedDump(at('c'.repeat(251)), 4, /file name too long for a catalog/));
  it('a path ending in "/" is refused before the dump', () => refusedDump('nodir/', 4, /nodir\/: names a directory \(it ends in "\/"\)/));
  it('an existing directory is refused before the dump', () => refusedDump(at('adir'), 4, /adir: is a directory/));
  it('a path in a directory that does not exist is refused before the dump', () => refusedDump(at('missing/catalog.json'), 3, /catalog\.json: no such directory .*missing/));
  it('a path under a regular file is refused before the dump', () => refusedDump(at('afile/catalog.json'), 4, /not a directory/));
  it('a FIFO is refused at once (reading it waited for a writer forever)', async () => {
    await refusedDump(at('fifo'), 4, /fifo: is not a regular file \(a FIFO\)/);
    expectOneLineError(cli(['catalog', 'list', '--catalog', at('fifo')]), 'catalog list --catalog FIFO', 4, /is not a regular file \(a FIFO\)/);
  });
  it('a file too large to be one string (over 512 MiB; sparse here) is refused in one line, not "Cannot create a string"', async () => {
    const huge = path.join(root, 'huge.json'); // outside work: a sparse 600 MiB file
    fs.writeFileSync(huge, '');
    fs.truncateSync(huge, 600 << 20);
    try {
      expectOneLineError(cli(['catalog', 'list', '--catalog', huge]), 'catalog list --catalog HUGE', 4, /huge\.json: 600 MiB is more than imgstream reads as a catalog \(at most 512 MiB\)/);
      await refusedDump(huge, 4, /more than imgstream reads as a catalog/);
      // the mirror state: the same refusal, before anything is transferred
      const r = cli(['mirror', 'status', vol, '--state', huge]);
      expectOneLineError(r, 'mirror status --state HUGE', 4, /huge\.json: 600 MiB is more than imgstream reads as a mirror state/);
      expect(fs.statSync(huge).size).toBe(600 << 20);
    } finally {
      fs.rmSync(huge, { force: true });
    }
  });
});

describe('catalog contents', () => {
  const good = {
    id: '3f2a9c4e-1b7d-4e8f-9a6b-2c5d8e1f0a3b',
    volume: { uuid: '0123456789abcdef0123456789abcdef', path: '/vols/vm.vol' },
    level: 1,
    base: { id: 1, name: 's1' },
    top: { id: 2, name: 's2' },
    snapshots: ['s2'],
    expression: 's2 - s1',
    date: '2026-12-01T01:00:00.000Z',
    finished: '2026-12-01T01:00:05.000Z',
    media: { kind: 'file', location: '/b/vm.l1' },
    blocks: 10,
    dataBytes: 40960,
    streamBytes: 41234,
    sha256: 'a'.repeat(64),
    status: 'complete',
  };
  const other = { ...good, id: '4f2a9c4e-1b7d-4e8f-9a6b-2c5d8e1f0a3b', level: 0, base: null, top: { id: 1, name: 's1' }, expression: 's1', media: { kind: 'tape', location: '/tapes/t1', tapeFile: 2, tapes: ['/tapes/t1'] } };
  const write = (name: string, dumps: unknown[], version: unknown = 1): string => {
    const file = path.join(root, name);
    fs.writeFileSync(file, JSON.stringify({ format: 'imgstream-catalog', version, dumps }));
    return file;
  };

  it('well-formed records are read', async () => {
    const file = write('good.json', [other, good, { ...good, id: '5f2a9c4e-1b7d-4e8f-9a6b-2c5d8e1f0a3b', encrypted: true, media: { kind: 'stdout', location: '-' } }]);
    expect((await check<{ dumps: unknown[] }>(['catalog', 'list', '--catalog', file])).dumps).toHaveLength(3);
  });

  it('S3 records are read with the store they were written to, and without one (as catalogs written before it was recorded have them); list shows the store', async () => {
    const onCeph = { ...good, media: { kind: 's3', location: 's3://dumps/vm/l1', endpoint: 'http://ceph1:7480', pathStyle: true } };
    const onAws = { ...other, media: { kind: 's3', location: 's3://dumps/vm/l0' } };
    const file = write('s3.json', [onAws, onCeph]);
    const listed = await check<{ dumps: Array<{ media: unknown }> }>(['catalog', 'list', '--catalog', file]);
    expect(listed.dumps.map((d) => d.media)).toEqual([onAws.media, onCeph.media]);
    const rows = cli(['catalog', 'list', '--catalog', file]).stdout.trimEnd().split('\n');
    expect(rows[1]).toMatch(/ s3 s3:\/\/dumps\/vm\/l0$/); // AWS: no endpoint shown
    expect(rows[2]).toMatch(/ s3 s3:\/\/dumps\/vm\/l1 at http:\/\/ceph1:7480 \(path-style\)$/);
    expect(cli(['catalog', 'show', good.id.slice(0, 8), '--catalog', file]).stdout).toMatch(/^media\s+s3 s3:\/\/dumps\/vm\/l1 at http:\/\/ceph1:7480 \(path-style\)$/m);
    // no such dump: the hint lists this catalog, not the default one
    const none = cli(['catalog', 'show', 'ffffffff', '--catalog', file]);
    expect(none.code).toBe(3);
    expect(none.stderr.trim()).toBe(`imgstream: ${file}: no dump "ffffffff" (list them with: imgstream catalog list --catalog ${file})`);
    // a prefix two ids share, or none at all, is the user's to make longer: named, exit 2 (it said "more than one dump matches", exit 3, naming none)
    const two = write('two.json', [good, { ...good, id: '3f2a9c4e-0000-4e8f-9a6b-2c5d8e1f0a3b', media: { kind: 'file', location: '/b/other.l1' } }]);
    const ambiguous = cli(['catalog', 'show', '3f2a', '--catalog', two]);
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr.trim()).toBe(`imgstream: ${two}: 2 dumps have ids beginning "3f2a": 3f2a9c4e-0, 3f2a9c4e-1 (give more of the id)`);
    const empty = cli(['catalog', 'show', '', '--catalog', two]);
    expect(empty.code).toBe(2);
    expect(empty.stderr.trim()).toMatch(/^imgstream: the dump id is empty \(give a dump's id, or a prefix of it no other dump's has: imgstream catalog list --catalog \S+ lists them\)$/);
  });

  const bad: Array<[string, Record<string, unknown>, RegExp]> = [
    ['media a number', { media: 5 }, /media is not an object/],
    ['an unknown media kind', { media: { kind: 'floppy', location: 'a:' } }, /media\.kind "floppy" is not one of/],
    ['media without a location', { media: { kind: 'file' } }, /media\.location \(missing\)/],
    ['a tape file number 0', { media: { kind: 'tape', location: '/t', tapeFile: 0 } }, /media\.tapeFile 0/],
    ['level 42', { level: 42 }, /level 42 is not a dump level 0 to 9/],
    ['level -1', { level: -1 }, /level -1/],
    ['level 1.5', { level: 1.5 }, /level 1\.5/],
    ['level as a string', { level: '1' }, /level "1"/],
    ['a date that does not parse', { date: 'yesterday' }, /date "yesterday" is not a date/],
    ['a date out of range', { date: '2026-13-45T00:00:00.000Z' }, /date "2026-13-45T00:00:00\.000Z" is not a date/],
    ['a date without its zone', { finished: '2026-12-01 01:00:05' }, /finished "2026-12-01 01:00:05" is not a date/],
    ['a numeric id', { id: 5 }, /id 5 is not a stream id/],
    ['an id of the wrong shape', { id: 'not-a-uuid' }, /id "not-a-uuid" is not a stream id/],
    ['a volume uuid of the wrong shape', { volume: { uuid: 'xyz', path: null } }, /volume\.uuid "xyz" is not a volume uuid/],
    ['a volume path that is a number', { volume: { uuid: good.volume.uuid, path: 7 } }, /volume\.path 7/],
    ['a top snapshot id that is a string', { top: { id: 'x', name: 's2' } }, /top\.id "x" is not a snapshot id/],
    ['a base without a name', { base: { id: 1 } }, /base\.name \(missing\)/],
    ['snapshots not a list', { snapshots: 's2' }, /snapshots "s2" is not a list/],
    ['an empty expression', { expression: '' }, /expression "" is not/],
    ['a negative block count', { blocks: -1 }, /blocks -1 is not a count/],
    ['a missing stream size', { streamBytes: undefined }, /streamBytes \(missing\) is not a count/],
    ['a short sha256', { sha256: 'abc' }, /sha256 "abc" is not a SHA-256/],
    ['another status', { status: 'partial' }, /status "partial" is not "complete"/],
    ['encrypted false', { encrypted: false }, /encrypted false is not true/],
    ['an S3 endpoint that is not a URL', { media: { kind: 's3', location: 's3://b/k', endpoint: 'ceph1:7480' } }, /media\.endpoint "ceph1:7480" is not an http or https URL/],
    ['an S3 endpoint holding credentials', { media: { kind: 's3', location: 's3://b/k', endpoint: 'http://key:secret@ceph1:7480' } }, /media\.endpoint holds a user name or password \(credentials are never recorded\)/],
    ['an endpoint on a file', { media: { kind: 'file', location: '/b/x', endpoint: 'http://ceph1:7480' } }, /media\.endpoint "http:\/\/ceph1:7480" on a file medium/],
    ['path-style false', { media: { kind: 's3', location: 's3://b/k', pathStyle: false } }, /media\.pathStyle false is not true on an S3 object/],
  ];
  for (const [i, [what, change, pattern]] of bad.entries()) {
    it(`a record with ${what} is refused, naming the catalog, the record and the field`, async () => {
      const file = write('bad.json', [other, { ...good, ...change }]);
      // the first as a process; the others, the same command and outcome, in this process
      const args = ['catalog', 'list', '--catalog', file];
      const line = expectOneLineError(i === 0 ? cli(args) : await inProcess(args, { env }), what, 9, pattern);
      expect(line).toContain(`${file}: dump record 2 of 2 is malformed: `);
    });
  }

  it('a dump with a malformed catalog is refused before it takes its snapshot', async () => {
    await refusedDump(write('bad-dump.json', [{ ...good, level: 42 }]), 9, /dump record 1 of 1 is malformed: level 42/);
  });

  it('catalog rebuild over a damaged catalog keeps the damaged file whole beside it, and says so', async () => {
    const dir = path.join(root, 'rebuild');
    fs.mkdirSync(dir);
    const stream = path.join(dir, 'v.l0');
    const d = cliJson<{ streamId: string }>(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', stream, '--catalog', path.join(dir, 'scratch.json')], { env });
    const catalog = path.join(dir, 'catalog.json');
    // a hand edit gone wrong: 2 good records and one no longer valid
    const text = JSON.stringify({ format: 'imgstream-catalog', version: 1, dumps: [other, { ...good, level: 42 }] });
    fs.writeFileSync(catalog, text);
    const r = cliJson<{ records: Array<{ id: string }>; damagedCatalogKeptAs: string }>(['catalog', 'rebuild', '--from', stream, '--catalog', catalog], { env });
    expect(r.records.map((x) => x.id)).toEqual([d.streamId]);
    expect(path.dirname(r.damagedCatalogKeptAs)).toBe(dir);
    expect(path.basename(r.damagedCatalogKeptAs)).toMatch(/^catalog\.json\.damaged-\d{8}T\d{6}\.\d{3}Z$/);
    expect(fs.readFileSync(r.damagedCatalogKeptAs, 'utf8')).toBe(text);
    expect((await check<{ dumps: Array<{ id: string }> }>(['catalog', 'list', '--catalog', catalog])).dumps.map((x) => x.id)).toEqual([d.streamId]);
    // in text, one line says where it went; an empty catalog file (touch) holds nothing to keep
    fs.writeFileSync(catalog, '{"format": "imgstream-catalog", "dumps": [');
    expect(cliOk(['catalog', 'rebuild', '--from', stream, '--catalog', catalog], { env }).stdout).toMatch(/the catalog was damaged: started afresh, the damaged file kept as .*catalog\.json\.damaged-/);
    fs.writeFileSync(catalog, '');
    const before = fs.readdirSync(dir).sort();
    expect(cliJson<{ damagedCatalogKeptAs: string | null }>(['catalog', 'rebuild', '--from', stream, '--catalog', catalog], { env }).damagedCatalogKeptAs).toBeNull();
    expect(fs.readdirSync(dir).sort()).toEqual(before);
    // a file of another kind (a --catalog typo) is no damaged catalog: never replaced, nor renamed aside
    const foreign = path.join(dir, 'passwd.copy');
    const text2 = 'root:x:0:0:root:/root:/bin/bash\n';
    fs.writeFileSync(foreign, text2);
    const names = fs.readdirSync(dir).sort();
    expectOneLineError(cli(['catalog', 'rebuild', '--from', stream, '--catalog', foreign]), 'catalog rebuild over another kind of file', 5, /passwd\.copy: not an imgstream catalog: it holds something else/);
    expect(fs.readFileSync(foreign, 'utf8')).toBe(text2);
    expect(fs.readdirSync(dir).sort()).toEqual(names);
  });

  it('catalog rebuild from streams that are all damaged records nothing, exits 9 and leaves the catalog as it was', () => {
    const dir = path.join(root, 'rebuild-damaged');
    fs.mkdirSync(dir);
    const stream = path.join(dir, 'v.l0');
    cliOk(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', stream, '--catalog', path.join(dir, 'scratch.json')], { env });
    fs.truncateSync(stream, Math.floor(fs.statSync(stream).size / 2)); // cut off, as by a full disk
    const catalog = path.join(dir, 'catalog.json');
    const text = JSON.stringify({ format: 'imgstream-catalog', version: 1, dumps: [other] });
    fs.writeFileSync(catalog, text);
    const names = fs.readdirSync(dir).sort();
    const cut = expectOneLineError(cli(['catalog', 'rebuild', '--from', stream, '--catalog', catalog]), 'catalog rebuild from a cut-off stream', 9, /nothing recorded: the one stream read was incomplete or damaged; .*v\.l0: .*the catalog is unchanged/);
    expect(cut.split(`${stream}:`), 'the stream named once').toHaveLength(2);
    expect(fs.readFileSync(catalog, 'utf8')).toBe(text);
    expect(fs.readdirSync(dir).sort()).toEqual(names);
    // a file that is no image stream at all (a wrong --from): exit 5, as verify and restore give it
    const foreign = path.join(dir, 'notes.txt');
    fs.writeFileSync(foreign, 'not a dump\n'.repeat(100));
    const line = expectOneLineError(cli(['catalog', 'rebuild', '--from', foreign, '--catalog', catalog]), 'catalog rebuild from a file that is no stream', 5, /nothing recorded: the one file read is not an image stream this imgstream reads; .*notes\.txt: not an imgstream image stream/);
    expect(line.split(`${foreign}:`), 'the file named once').toHaveLength(2);
    expect(runCli(['verify', foreign], { env }).code).toBe(5);
    expect(fs.readFileSync(catalog, 'utf8')).toBe(text);
    // media with no stream at all (a mistyped or empty tape directory): exit 3, as restore and verify give it, the catalog not rewritten
    fs.mkdirSync(path.join(dir, 'blank-tape'));
    const ino = fs.statSync(catalog).ino;
    expectOneLineError(cli(['catalog', 'rebuild', '--from', `tape:${path.join(dir, 'blank-tape')}`, '--catalog', catalog]), 'catalog rebuild from an empty tape directory', 3, /nothing recorded: no stream found in tape:.*blank-tape; the catalog is unchanged; check the --from paths/);
    expect(runCli(['verify', `tape:${path.join(dir, 'blank-tape')}`], { env }).code).toBe(3);
    expect(fs.readFileSync(catalog, 'utf8')).toBe(text);
    expect(fs.statSync(catalog).ino, 'the catalog file not replaced').toBe(ino);
  });

  it('a catalog of another version exits 5, the code of unsupported format versions', async () => {
    const file = write('v99.json', [], 99);
    expectOneLineError(cli(['catalog', 'list', '--catalog', file]), 'catalog list of version 99', 5, /a catalog of version 99/);
    await refusedDump(file, 5, /a catalog of version 99/);
  });
});
