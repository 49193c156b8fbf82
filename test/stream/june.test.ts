// The June example of the design through the built CLI: snapshots june1..june9 of a
// source volume, dumps level 0 at june3, level 1 at june5, level 2 at june7, level 1 at
// june9. Every valid chain restores into a new volume whose every snapshot (and active
// file system) exports byte for byte like the source's, and checks clean; the same
// through a shell pipe, from the catalog (--as-of), from a rebuilt catalog, with
// --compress none and with --order interleave:4.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, runCli, sha256 } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { inProcessJson, setupOk } from '../support/in-process.js';
import { cliJsonAsync, dirEntries, dryRunExpression, dump, exportShas, expectClean, pipeline, snapshotNames, type DumpJson } from '../support/stream-cli.js';
import { readImageStream } from '../../src/stream/stream-reader.js';
import { readFileBytes } from '../../src/media/file/file-medium.js';

const BS = 4096;
const BLOCKS = 2048; // 8 MiB logical disk
const root = tempDir('imgstream-june-cli-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'no-catalog-given.json') };
const o = { env };
const src = path.join(root, 'src.vol');
const catalog = path.join(root, 'catalog.json');
const days = Array.from({ length: 9 }, (_, i) => `june${i + 1}`);
/** sha256 of each june snapshot's image, as imported and as the source exports it. */
const imageSha: Record<string, string> = {};
const sourceSha: Record<string, string> = {};
const LEVELS: Record<string, number> = { june3: 0, june5: 1, june7: 2, june9: 1 };
const file = (top: string, tag = '') => path.join(root, `src.${top}.l${LEVELS[top]}${tag}`);
const dumps: Record<string, DumpJson> = {};
/** The same four dumps with --compress none, and with --order interleave:4 (each with its own catalog). */
let noneDumps: Record<string, DumpJson & { file: string }> = {};
let il4Dumps: Record<string, DumpJson & { file: string }> = {};

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`, '--max-snapshots', '32'], { env });
  const img = randomImage(BLOCKS, BS, 6001);
  const raw = path.join(root, 'day.raw');
  for (const [d, name] of days.entries()) {
    mutate(img, BS, 60, 7000 + d);
    fs.writeFileSync(raw, img);
    imageSha[name] = sha256(img);
    await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
    await setupOk(['snapshot', 'create', src, name, '-q'], { env });
  }
  Object.assign(sourceSha, await exportShas(src, days, o));
  // the source is what the test thinks it is: each snapshot exports as imported
  expect(sourceSha).toEqual(imageSha);
  expect(new Set(Object.values(imageSha)).size).toBe(9);
}, 120_000);

/** Restores `streams` (files) into a new volume and checks every snapshot and the active file system against the source. */
async function restoreAndCompare(streams: string[], dst: string, expectTops: string[]): Promise<void> {
  const r = await cliJsonAsync<{ created: boolean; streams: Array<{ top: string; level: number }> }>(['restore', ...streams.flatMap((s) => ['--from', s]), '--to', dst], o);
  expect(r.created).toBe(true);
  expect(r.streams.map((s) => s.top)).toEqual(expectTops);
  await expectSameAsSource(dst, expectTops.at(-1)!);
}

/** dst holds exactly june1..top, each exporting like the source; its active file system is top; it checks clean. */
async function expectSameAsSource(dst: string, top: string): Promise<void> {
  const want = days.slice(0, days.indexOf(top) + 1);
  // volume check walks the active file system and every snapshot: its list is the snapshot list
  expect(await expectClean(dst, o), dst).toEqual(['active', ...want]);
  const got = await exportShas(dst, [...want, null], o);
  for (const n of want) expect(got[n], `${path.basename(dst)}@${n}`).toBe(sourceSha[n]);
  expect(got.active, `${path.basename(dst)} active`).toBe(sourceSha[top]);
}

/** The four June dumps with extra flags into their own catalog; returns the stream files. */
function juneDumps(cat: string, tag: string, extra: string[]): Record<string, DumpJson & { file: string }> {
  const out: Record<string, DumpJson & { file: string }> = {};
  for (const top of ['june3', 'june5', 'june7', 'june9']) out[top] = { ...dump(src, LEVELS[top], top, file(top, tag), cat, extra, o), file: file(top, tag) };
  return out;
}

describe('June example through the CLI', () => {
  it('dry runs and dumps give the BSD level expressions', async () => {
    expect(() => dryRunExpression(src, 1, 'june5', catalog, o)).toThrow(/no dump of this volume below level 1/);
    expect(dryRunExpression(src, 0, 'june3', catalog, o)).toBe('june3 + june2 + june1');
    dumps.june3 = dump(src, 0, 'june3', file('june3'), catalog, [], o);
    expect(dumps.june3.expression).toBe('june3 + june2 + june1');
    expect(dryRunExpression(src, 1, 'june5', catalog, o)).toBe('june5 + june4 - june3');
    dumps.june5 = dump(src, 1, 'june5', file('june5'), catalog, [], o);
    expect(dryRunExpression(src, 2, 'june7', catalog, o)).toBe('june7 + june6 - june5');
    dumps.june7 = dump(src, 2, 'june7', file('june7'), catalog, [], o);
    expect(dryRunExpression(src, 1, 'june9', catalog, o)).toBe('june9 + june8 + june7 + june6 + june5 + june4 - june3');
    dumps.june9 = dump(src, 1, 'june9', file('june9'), catalog, [], o);
    for (const [top, d] of Object.entries(dumps)) {
      expect(d.level).toBe(LEVELS[top]);
      expect(d.top).toBe(top);
      expect(fs.statSync(file(top)).size).toBe(d.streamBytes);
    }
    expect(dumps.june5.expression).toBe('june5 + june4 - june3');
    expect(dumps.june7.expression).toBe('june7 + june6 - june5');
    expect(dumps.june9.expression).toBe('june9 + june8 + june7 + june6 + june5 + june4 - june3');
    expect([dumps.june5.base, dumps.june7.base, dumps.june9.base]).toEqual(['june3', 'june5', 'june3']);
    // a dry run writes nothing and records nothing
    const listed = (await inProcessJson<{ dumps: Array<{ id: string }> }>(['catalog', 'list', '--catalog', catalog], o)).dumps;
    expect(listed.map((d) => d.id).sort()).toEqual(Object.values(dumps).map((d) => d.streamId).sort());
    // the whole chain verifies, in order
    const v = cliJson<{ ok: boolean; streams: Array<{ top: string }>; needs: string | null }>(['verify', ...['june3', 'june5', 'june7', 'june9'].map((t) => file(t))], o);
    expect(v.ok).toBe(true);
    expect(v.needs).toBeNull();
    expect(v.streams.map((s) => s.top)).toEqual(['june3', 'june5', 'june7', 'june9']);
    // the same dumps uncompressed and interleaved (here: the source is one process at a time)
    noneDumps = juneDumps(path.join(root, 'none-catalog.json'), '.none', ['--compress', 'none']);
    il4Dumps = juneDumps(path.join(root, 'interleave-catalog.json'), '.il4', ['--order', 'interleave:4']);
    for (const d of [noneDumps, il4Dumps]) expect(Object.values(d).map((x) => x.expression)).toEqual(Object.values(dumps).map((x) => x.expression));
  }, 120_000);

  // restores into different volumes run side by side (the pipe test alone reads the source)
  describe.concurrent('restores', () => {
    const chains = [['june3'], ['june3', 'june5'], ['june3', 'june5', 'june7'], ['june3', 'june9'], ['june3', 'june5', 'june7', 'june9']];
    for (const chain of chains) {
      it(`the chain ${chain.map((t) => `L${LEVELS[t]}@${t}`).join(' + ')} restores every snapshot byte for byte`, async () => {
        await restoreAndCompare(chain.map((t) => file(t)), path.join(root, `r-${chain.join('-')}.vol`), chain);
      }, 180_000);
    }

    it('restores through a pipe: dump --to - | restore --from -', async () => {
      const pcat = path.join(root, 'pipe-catalog.json');
      const dst = path.join(root, 'piped.vol');
      for (const top of ['june3', 'june5', 'june7', 'june9']) {
        const p = await pipeline(['dump', src, '--level', String(LEVELS[top]), '--snapshot', top, '--to', '-', '--catalog', pcat, '-q'], ['restore', '--from', '-', '--to', dst, '-q'], root, env);
        expect(p, top).toMatchObject({ left: 0, right: 0 });
        // each step: the snapshots up to top, the active file system at top (all of them checked at the end)
        expect(await snapshotNames(dst, o)).toEqual(days.slice(0, days.indexOf(top) + 1));
        if (top !== 'june9') expect((await exportShas(dst, [null], o)).active, top).toBe(sourceSha[top]);
      }
      await expectSameAsSource(dst, 'june9');
      // dumps to stdout are recorded too (the next level finds its base), as on stdout
      const recs = (await inProcessJson<{ dumps: Array<{ level: number; top: { name: string }; media: { kind: string } }> }>(['catalog', 'list', '--catalog', pcat], o)).dumps;
      expect(recs.map((r) => [r.level, r.top.name, r.media.kind])).toEqual([
        [0, 'june3', 'stdout'],
        [1, 'june5', 'stdout'],
        [2, 'june7', 'stdout'],
        [1, 'june9', 'stdout'],
      ]);
    }, 180_000);

    it('restore --as-of takes the chain from the catalog (a snapshot name or a date)', async () => {
      const dst = path.join(root, 'asof-june7.vol');
      const r = await cliJsonAsync<{ streams: Array<{ top: string }> }>(['restore', '--to', dst, '--as-of', 'june7', '--catalog', catalog], o);
      expect(r.streams.map((s) => s.top)).toEqual(['june3', 'june5', 'june7']);
      await expectSameAsSource(dst, 'june7');
      // by date: the newest dump taken by then is the level 1 at june9, over the level 0
      const when = (await inProcessJson<{ dumps: Array<{ id: string; date: string }> }>(['catalog', 'list', '--catalog', catalog], o)).dumps.find((d) => d.id === dumps.june9.streamId)!.date;
      const dst9 = path.join(root, 'asof-date.vol');
      const r9 = await cliJsonAsync<{ streams: Array<{ top: string }> }>(['restore', '--to', dst9, '--as-of', when, '--catalog', catalog], o);
      expect(r9.streams.map((s) => s.top)).toEqual(['june3', 'june9']);
      // the same chain as L0 + L1@june9, checked in full by its own test: here its list and newest state
      expect(await snapshotNames(dst9, o)).toEqual(days);
      expect(await exportShas(dst9, ['june9', null], o)).toEqual({ june9: sourceSha.june9, active: sourceSha.june9 });
    }, 120_000);

    it('catalog rebuild from the stream files reproduces the records', async () => {
      const fresh = path.join(root, 'rebuilt.json');
      const files = ['june9', 'june3', 'june7', 'june5'].map((t) => file(t));
      const r = await cliJsonAsync<{ records: unknown[]; skipped: unknown[] }>(['catalog', 'rebuild', ...files.flatMap((f) => ['--from', f]), '--catalog', fresh], o);
      expect(r.skipped).toEqual([]);
      type Rec = { id: string; level: number; base: unknown; top: unknown; sha256: string; expression: string; snapshots: string[]; volume: { uuid: string }; blocks: number; dataBytes: number; streamBytes: number; date: string; media: unknown };
      const pick = (d: Rec) => ({ id: d.id, level: d.level, base: d.base, top: d.top, sha256: d.sha256, expression: d.expression, snapshots: d.snapshots, uuid: d.volume.uuid, blocks: d.blocks, dataBytes: d.dataBytes, streamBytes: d.streamBytes, date: d.date, media: d.media });
      const list = async (c: string) => (await inProcessJson<{ dumps: Rec[] }>(['catalog', 'list', '--catalog', c], o)).dumps.map(pick).sort((a, b) => a.id.localeCompare(b.id));
      const rebuilt = await list(fresh);
      expect(rebuilt).toHaveLength(4);
      expect(rebuilt).toEqual(await list(catalog));
      // the rebuilt catalog drives restore --as-of like the original
      const dst = path.join(root, 'asof-rebuilt.vol');
      const rr = await cliJsonAsync<{ streams: Array<{ top: string }> }>(['restore', '--to', dst, '--as-of', 'june9', '--catalog', fresh], o);
      expect(rr.streams.map((s) => s.top)).toEqual(['june3', 'june9']);
    }, 120_000);

    it('--compress none streams restore identically', async () => {
      const d = noneDumps;
      for (const top of Object.keys(d)) {
        // uncompressed: the stream holds every block whole but the map blocks an
        // incremental sends as differences from its base, so it is larger than the zstd one
        const whole = d[top].blocks - d[top].mapDeltaBlocks;
        if (top === 'june3') expect(d[top].mapDeltaBlocks).toBe(0);
        else expect(d[top].mapDeltaBlocks, top).toBeGreaterThan(0);
        expect(d[top].streamBytes, top).toBeGreaterThan(whole * BS);
        expect(d[top].streamBytes, top).toBeGreaterThan(dumps[top].streamBytes);
        expect(d[top].blocks, top).toBe(dumps[top].blocks);
      }
      await restoreAndCompare(['june3', 'june5', 'june7', 'june9'].map((t) => d[t].file), path.join(root, 'none-chain.vol'), ['june3', 'june5', 'june7', 'june9']);
    }, 180_000);

    it('--order interleave:4 streams restore identically', async () => {
      const d = il4Dumps;
      // the streams say so in their headers and carry the same blocks as the vbn-ordered ones.
      // (Stripes are cut in plane blocks of 32768 VBNs, so on this small volume the blocks
      // still come in rising order: real interleaving needs a volume over 128 MiB.)
      const scan = async (f: string) => {
        let order = '';
        const vbns: number[] = [];
        for await (const rec of readImageStream(readFileBytes(f), f)) {
          if (rec.type === 'header') order = rec.header.order;
          else if (rec.type === 'data') vbns.push(...rec.vbns);
        }
        return { order, vbns: vbns.sort((a, b) => a - b) };
      };
      for (const top of ['june3', 'june9']) {
        const il = await scan(d[top].file);
        const seq = await scan(file(top));
        expect(il.order, top).toBe('interleave:4');
        expect(seq.order, top).toBe('vbn');
        expect(il.vbns, top).toEqual(seq.vbns);
      }
      await restoreAndCompare(['june3', 'june5', 'june7', 'june9'].map((t) => d[t].file), path.join(root, 'il4-chain.vol'), ['june3', 'june5', 'june7', 'june9']);
    }, 180_000);
  });

  // catalog rebuild repairs a catalog where it is: a zero-byte file (as `touch` or mktemp
  // leave it) or a damaged one (kept beside it: test/cli/catalog-faults.test.ts) is
  // started afresh, as the "not a readable imgstream catalog" hint tells users to do.
  it('catalog rebuild into an empty (zero-byte) catalog file', async () => {
    const empty = path.join(root, 'empty-catalog.json');
    fs.writeFileSync(empty, '');
    cliJson(['catalog', 'rebuild', '--from', file('june3'), '--from', file('june5'), '--catalog', empty], o);
    expect((await inProcessJson<{ dumps: Array<{ id: string }> }>(['catalog', 'list', '--catalog', empty], o)).dumps.map((d) => d.id).sort()).toEqual([dumps.june3.streamId, dumps.june5.streamId].sort());
  });

  it('catalog rebuild replaces a damaged catalog file', async () => {
    const damaged = path.join(root, 'damaged-catalog.json');
    fs.writeFileSync(damaged, fs.readFileSync(catalog, 'utf8').slice(0, 100));
    cliJson(['catalog', 'rebuild', ...['june3', 'june5', 'june7', 'june9'].flatMap((t) => ['--from', file(t)]), '--catalog', damaged], o);
    expect((await inProcessJson<{ dumps: unknown[] }>(['catalog', 'list', '--catalog', damaged], o)).dumps).toHaveLength(4);
  });

  it('left nothing half-written beside the streams and volumes', () => {
    const leftovers = dirEntries(root).filter((n) => /partial|restoring|\.new-/.test(n));
    expect(leftovers).toEqual([]);
    expect(runCli(['verify', file('june9')], o).code).toBe(0);
  });
});
