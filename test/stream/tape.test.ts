// Tapes through the built CLI, checked with real GNU tar. The June dumps go to one tape
// directory (one tape file per dump: a tar archive of label, parts, end, in fixed
// records); restore reads them all in order, or one with tape:DIR#N, or the chain the
// catalog names; catalog rebuild reads them back. A level 0 spans three tapes when each
// is too small for it, and restores from them exactly; a dump that runs out of tapes
// fails with one line and leaves no tape file behind.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, runCli } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { inProcessJson, setupOk } from '../support/in-process.js';
import { dirEntries, dump, exportShas, expectClean, expectOneLineError, ok, type DumpJson, refused } from '../support/stream-cli.js';

const BS = 4096;
const BLOCKS = 1024; // 4 MiB logical disk
const RECORD = 10240; // the default tape record size
const root = tempDir('imgstream-tape-cli-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'no-catalog-given.json') };
const o = { env, timeoutMs: 60_000 };
const src = path.join(root, 'src.vol');
const catalog = path.join(root, 'catalog.json');
const tape = path.join(root, 'tape-june');
const days = Array.from({ length: 9 }, (_, i) => `june${i + 1}`);
const TOPS = ['june3', 'june5', 'june7', 'june9'];
const LEVELS: Record<string, number> = { june3: 0, june5: 1, june7: 2, june9: 1 };
const sourceSha: Record<string, string> = {};
const dumps: Record<string, DumpJson & { media: { kind: string; location: string; tapeFile?: number; tapes?: string[] } }> = {};

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** GNU tar (not the product's tar code) on a tape file. */
function tar(args: string[]): Buffer {
  const r = spawnSync('tar', args, { maxBuffer: 1 << 30 });
  if (r.status !== 0) throw new Error(`tar ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}
const members = (file: string) => tar(['tf', file]).toString('utf8').trim().split('\n');
/** The stream carried by the given tape files, reassembled by GNU tar from their part members. */
const partsOf = (files: string[]) => Buffer.concat(files.map((f) => tar(['-xOf', f, '--wildcards', 'imgstream/*/part-*'])));

beforeAll(async () => {
  await setupOk(['volume', 'create', src, '--size', '4M', '--max-snapshots', '16'], { env });
  const img = randomImage(BLOCKS, BS, 31337);
  const raw = path.join(root, 'day.raw');
  for (const [d, name] of days.entries()) {
    mutate(img, BS, 30, 500 + d);
    fs.writeFileSync(raw, img);
    await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
    await setupOk(['snapshot', 'create', src, name, '-q'], { env });
  }
  Object.assign(sourceSha, await exportShas(src, days, o));
}, 120_000);

async function expectSameAsSource(dst: string, top: string): Promise<void> {
  const want = days.slice(0, days.indexOf(top) + 1);
  // volume check walks the active file system and every snapshot: its list is the snapshot list
  expect(await expectClean(dst, o), dst).toEqual(['active', ...want]);
  const got = await exportShas(dst, [...want, null], o);
  expect(got).toEqual({ ...Object.fromEntries(want.map((n) => [n, sourceSha[n]])), active: sourceSha[top] });
}

describe('June dumps on one tape', () => {
  it('each dump is the next tape file: a tar archive of label, parts, end, in whole records', () => {
    for (const top of TOPS) dumps[top] = dump(src, LEVELS[top], top, `tape:${tape}`, catalog, top === 'june3' ? ['--new-tape'] : [], o) as (typeof dumps)[string];
    expect(dirEntries(tape)).toEqual(['file0001.tar', 'file0002.tar', 'file0003.tar', 'file0004.tar']);
    TOPS.forEach((top, i) => {
      const d = dumps[top];
      const f = path.join(tape, `file000${i + 1}.tar`);
      expect(d.media).toMatchObject({ kind: 'tape', location: tape, tapeFile: i + 1 });
      expect(fs.statSync(f).size % RECORD, `${f} is not in whole records`).toBe(0);
      const names = members(f);
      const id = d.streamId;
      const parts = names.filter((n) => n.startsWith(`imgstream/${id}/part-`));
      expect(names, f).toEqual([`imgstream/${id}/label`, ...parts, `imgstream/${id}/end`]);
      expect(parts.map((n) => n.slice(-6)), f).toEqual(parts.map((_, k) => String(k).padStart(6, '0')));
      // what GNU tar extracts is the stream itself: it verifies as that dump
      const stream = path.join(root, `extracted.${top}`);
      fs.writeFileSync(stream, partsOf([f]));
      expect(fs.statSync(stream).size).toBe(d.streamBytes);
      const v = cliJson<{ streams: Array<{ streamId: string; sha256: string; level: number }> }>(['verify', stream], o);
      expect(v.streams[0]).toMatchObject({ streamId: id, sha256: d.sha256, level: LEVELS[top] });
      const label = JSON.parse(tar(['-xOf', f, `imgstream/${id}/label`]).toString('utf8'));
      expect(label).toMatchObject({ streamId: id, sequence: 1, recordSize: RECORD });
    });
  }, 120_000);

  it('verify and restore read every dump on the tape, in order', async () => {
    const v = cliJson<{ ok: boolean; streams: Array<{ top: string }> }>(['verify', `tape:${tape}`], o);
    expect(v.streams.map((s) => s.top)).toEqual(TOPS);
    const dst = path.join(root, 'from-tape.vol');
    const r = cliJson<{ created: boolean; streams: Array<{ top: string }> }>(['restore', '--from', `tape:${tape}`, '--to', dst], o);
    expect(r.streams.map((s) => s.top)).toEqual(TOPS);
    await expectSameAsSource(dst, 'june9');
  }, 120_000);

  it('tape:DIR#N reads one dump', async () => {
    const v = cliJson<{ streams: Array<{ top: string; level: number }>; needs: string | null }>(['verify', `tape:${tape}#3`], o);
    expect(v.streams).toMatchObject([{ top: 'june7', level: 2 }]);
    expect(v.needs).toBe('june5');
    const dst = path.join(root, 'from-tape-files.vol');
    const r = cliJson<{ streams: Array<{ top: string }> }>(['restore', '--from', `tape:${tape}#1`, '--from', `tape:${tape}#4`, '--to', dst], o);
    expect(r.streams.map((s) => s.top)).toEqual(['june3', 'june9']);
    await expectSameAsSource(dst, 'june9');
    expectOneLineError(await refused(['verify', `tape:${tape}#5`], o), 'tape file 5 of 4', 3);
  }, 120_000);

  it('restore --as-of and catalog rebuild work from the tape', async () => {
    const dst = path.join(root, 'asof.vol');
    const r = cliJson<{ streams: Array<{ top: string }> }>(['restore', '--to', dst, '--as-of', 'june7', '--catalog', catalog], o);
    expect(r.streams.map((s) => s.top)).toEqual(['june3', 'june5', 'june7']);
    await expectSameAsSource(dst, 'june7');
    const fresh = path.join(root, 'rebuilt.json');
    cliJson(['catalog', 'rebuild', '--from', `tape:${tape}`, '--catalog', fresh], o);
    type Rec = { id: string; level: number; base: unknown; top: unknown; sha256: string; streamBytes: number; media: unknown };
    const pick = (d: Rec) => ({ id: d.id, level: d.level, base: d.base, top: d.top, sha256: d.sha256, streamBytes: d.streamBytes, media: d.media });
    const list = async (c: string) => (await inProcessJson<{ dumps: Rec[] }>(['catalog', 'list', '--catalog', c], { env })).dumps.map(pick).sort((a, b) => a.id.localeCompare(b.id));
    expect(await list(fresh)).toHaveLength(4);
    expect(await list(fresh)).toEqual(await list(catalog));
  }, 120_000);
});

describe('a dump spanning tapes', () => {
  let tapeSize = 0;
  let l0Bytes = 0;

  beforeAll(() => {
    // the size of this level 0 decides the tape size: each tape takes about 40% of it
    const probe = dump(src, 0, 'june3', path.join(root, 'probe.l0'), path.join(root, 'probe-catalog.json'), ['--compress', 'none'], o);
    l0Bytes = probe.streamBytes;
    tapeSize = Math.ceil((0.4 * l0Bytes) / RECORD) * RECORD;
  }, 60_000);

  it('goes on over three tapes and restores from them exactly', async () => {
    const tapes = ['span1', 'span2', 'span3'].map((t) => path.join(root, t));
    const cat = path.join(root, 'span-catalog.json');
    const d = dump(src, 0, 'june3', `tape:${tapes.join(',')}`, cat, ['--compress', 'none', '--tape-size', String(tapeSize), '--new-tape'], o) as (typeof dumps)[string];
    expect(d.media).toMatchObject({ kind: 'tape', location: tapes[0], tapeFile: 1, tapes });
    const files = tapes.map((t) => path.join(t, 'file0001.tar'));
    for (const t of tapes) expect(dirEntries(t)).toEqual(['file0001.tar']);
    const id = d.streamId;
    const allParts: string[] = [];
    files.forEach((f, i) => {
      expect(fs.statSync(f).size, `${f} is larger than the tape`).toBeLessThanOrEqual(tapeSize);
      expect(fs.statSync(f).size % RECORD).toBe(0);
      const names = members(f);
      const parts = names.filter((n) => n.includes('/part-'));
      expect(parts.length, f).toBeGreaterThan(0);
      expect(names, f).toEqual([`imgstream/${id}/label`, ...parts, `imgstream/${id}/${i < 2 ? 'continued' : 'end'}`]);
      allParts.push(...parts);
      expect(JSON.parse(tar(['-xOf', f, `imgstream/${id}/label`]).toString('utf8')).sequence).toBe(i + 1);
    });
    // part numbers run on across the tapes, and GNU tar gives back the whole stream
    expect(allParts.map((n) => Number(n.slice(-6)))).toEqual(allParts.map((_, k) => k));
    const stream = path.join(root, 'extracted.span');
    fs.writeFileSync(stream, partsOf(files));
    expect(fs.statSync(stream).size).toBe(d.streamBytes);
    expect(cliJson<{ streams: Array<{ sha256: string }> }>(['verify', stream], o).streams[0].sha256).toBe(d.sha256);
    // verify and restore from the three tapes
    expect(cliJson<{ ok: boolean }>(['verify', `tape:${tapes.join(',')}`], o).ok).toBe(true);
    const dst = path.join(root, 'from-span.vol');
    ok(['restore', '--from', `tape:${tapes.join(',')}`, '--to', dst, '-q'], o);
    await expectSameAsSource(dst, 'june3');
    // the tapes alone, out of order or one missing, do not pass for the stream
    const missing = runCli(['verify', `tape:${tapes[0]},${tapes[1]}`], o);
    expectOneLineError(missing, 'two of three tapes', 3, new RegExp(`^imgstream: tape ${tapes[1]} file 1 \\(tape 2 of dump ${id}\\) goes on on tape 3 of that dump, which was not given`));
    // given out of order, or without their first tape: named by path and label, nothing read
    const [a, b, c] = tapes;
    const label = (t: string, n: number) => new RegExp(`tape ${t} \\(tape ${n} of dump ${id}`);
    expectOneLineError(await refused(['restore', '--from', `tape:${b},${a},${c}`, '--to', path.join(root, 'never.vol')], o), 'restore of tapes b,a,c', 4, label(b, 2));
    expect(fs.existsSync(path.join(root, 'never.vol'))).toBe(false);
    expectOneLineError(await refused(['verify', `tape:${c},${b},${a}`], o), 'verify of tapes c,b,a', 4, label(c, 3));
    expectOneLineError(await refused(['verify', `tape:${b},${c}`], o), 'verify of tapes b,c', 3, /continues dump .* \(it is its tape 2\), whose tape 1 was not given/);
    expectOneLineError(await refused(['verify', `tape:${a},${c}`], o), 'verify of tapes a,c', 3, new RegExp(`tape 2 of dump ${id} was not given: tape ${c} \\(tape 3`));
  }, 120_000);

  it('running out of tapes fails with one line and leaves no tape file', async () => {
    const tapes = ['short1', 'short2'].map((t) => path.join(root, t));
    const cat = path.join(root, 'short-catalog.json');
    const r = runCli(['dump', src, '--level', '0', '--snapshot', 'june3', '--to', `tape:${tapes.join(',')}`, '--compress', 'none', '--tape-size', String(tapeSize), '--catalog', cat, '--new-tape'], o);
    expectOneLineError(r, 'dump onto too few tapes', undefined, /full|no next tape|out of tape/i);
    for (const t of tapes) expect(fs.existsSync(t) ? dirEntries(t) : [], `${t} holds something`).toEqual([]);
    expect(fs.existsSync(cat) ? (await inProcessJson<{ dumps: unknown[] }>(['catalog', 'list', '--catalog', cat], { env })).dumps : []).toEqual([]);
  }, 60_000);
});

describe('tapes as a user gives them', () => {
  it('a tape directory that does not exist is an error unless --new-tape makes it', () => {
    const missing = path.join(root, 'no-such-tape');
    const cat = path.join(root, 'new-tape-catalog.json');
    const r = runCli(['dump', src, '--level', '0', '--snapshot', 'june3', '--to', `tape:${missing}`, '--catalog', cat], o);
    expectOneLineError(r, 'dump to a missing tape', 3, /no such directory or device.*--new-tape/);
    expect(fs.existsSync(missing)).toBe(false);
    dump(src, 0, 'june3', `tape:${missing}`, cat, ['--new-tape'], o);
    expect(dirEntries(missing)).toEqual(['file0001.tar']);
  }, 60_000);

  it('a tape holding the dumps of two volumes verifies as one chain per volume', async () => {
    const two = path.join(root, 'two-volumes');
    const other = path.join(root, 'other.vol');
    const cat = path.join(root, 'two-catalog.json');
    await setupOk(['volume', 'create', other, '--size', '1M', '-q'], { env });
    fs.writeFileSync(path.join(root, 'other.raw'), randomImage(256, BS, 77));
    await setupOk(['volume', 'import', other, '--from', path.join(root, 'other.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', other, 'o1', '-q'], { env });
    dump(src, 0, 'june3', `tape:${two}`, cat, ['--new-tape'], o);
    dump(other, 0, 'o1', `tape:${two}`, cat, [], o);
    dump(src, 1, 'june5', `tape:${two}`, cat, [], o);
    dump(src, 0, 'june7', `tape:${two}`, cat, [], o); // a new level 0: a new chain of the same volume
    dump(src, 1, 'june9', `tape:${two}`, cat, [], o);
    const v = cliJson<{ ok: boolean; streams: unknown[]; chains: Array<{ streams: number; needs: string | null }> }>(['verify', `tape:${two}`], o);
    expect(v.streams).toHaveLength(5);
    expect(v.chains.map((c) => [c.streams, c.needs])).toEqual([[4, null], [1, null]]);
    expect(runCli(['verify', `tape:${two}`], o).stdout).toMatch(/volume [0-9a-f]+: 4 stream\(s\)/);
  }, 120_000);

  it('an extra level 0 of an older snapshot (for offsite) does not cut off the chain the next level 1 is on', async () => {
    // verify said "its base snapshot june5 is not in the streams before it", exit 3, of a tape restore reads
    const offsite = path.join(root, 'offsite');
    const cat = path.join(root, 'offsite-catalog.json');
    dump(src, 0, 'june5', `tape:${offsite}`, cat, ['--new-tape'], o);
    dump(src, 0, 'june3', `tape:${offsite}`, cat, [], o);
    expect(dump(src, 1, 'june7', `tape:${offsite}`, cat, [], o).base).toBe('june5');
    const v = runCli(['verify', `tape:${offsite}`], o);
    expect(v.code, v.stderr).toBe(0);
    expect(v.stdout).toMatch(/tape \S+ file 3: level 1 june5 -> june7, .*: ok\n3 stream\(s\) verified/);
    // its base is still looked for: after the older level 0 alone it is missing
    expectOneLineError(await refused(['verify', `tape:${offsite}#2`, `tape:${offsite}#3`], o), 'level 1 after the other level 0', 3, /file 3: its base snapshot "june5" is not in the streams before it/);
  }, 60_000);
});
