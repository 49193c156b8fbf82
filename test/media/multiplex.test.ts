// Multiplexed tape files through the built CLI: three volumes dumped at once (level 0,
// then level 1) onto one tape file each time, read back with GNU tar and bsdtar, restored
// volume by volume from the tape files alone, from the catalog and after catalog rebuild,
// with only the chosen stream's members read. Damaged copies (cut short, bytes flipped)
// still give every stream that is whole and refuse the others; a source that fails fails
// alone; a dump killed with SIGKILL leaves nothing recorded and every stream incomplete.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, runCli, sleep, spawnCli, finished } from '../support/cli.js';
import { rng, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { exportShas, expectOneLineError, ok, refused } from '../support/stream-cli.js';

const BS = 4096;
const BLOCKS = 2048; // 8 MiB logical disks
const root = tempDir('imgstream-mux-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'no-catalog-given.json') };
const o = { env, timeoutMs: 120_000 };
const catalog = path.join(root, 'catalog.json');
const tape = path.join(root, 'tape');
const VOLS = ['a', 'b', 'c'].map((n) => path.join(root, `${n}.vol`));
const sourceSha: Record<string, Record<string, string>> = {};
const streams: Record<string, Record<string, { streamId: string; sha256: string; streamBytes: number }>> = {}; // [snapshot][volume]

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface LogJson {
  log: {
    header: { id: string; sequence: number; idleMs: number; sources: Array<{ source: number; volume: { path: string; uuid: string }; streamId: string | null; status: string; parts: number; bytes: number; error?: string }> };
    entries: Array<{ source: number; stream: string; kind: string; seq: number | null; size: number; offset: number; record: number; time: string; waitedMs: number }>;
  };
}

function tar(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { maxBuffer: 1 << 30, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return r.stdout;
}

/** An image whose used blocks are random bytes (incompressible: each stream takes several parts). */
function image(seed: number): Buffer {
  const r = rng(seed);
  const b = Buffer.alloc(BLOCKS * BS);
  for (let i = 0; i < BLOCKS; i++) if (r() < 0.6) randomBytes(BS).copy(b, i * BS);
  return b;
}

async function importAndSnap(vol: string, img: Buffer, snap: string): Promise<void> {
  const raw = `${vol}.raw`;
  fs.writeFileSync(raw, img);
  await setupOk(['volume', 'import', vol, '--from', raw, '-q'], { env });
  await setupOk(['snapshot', 'create', vol, snap, '-q'], { env });
}

interface MuxDumpJson {
  id: string;
  files: Array<{ tape: string; number: number; sequence: number }>;
  sources: Array<{ volume: string; ok: boolean; dump?: { streamId: string; sha256: string; streamBytes: number; level: number }; error?: { code: string; message: string } }>;
  idleMs: number;
  elapsedMs: number;
}

function recordStreams(snap: string, r: MuxDumpJson): void {
  streams[snap] = {};
  for (const s of r.sources) if (s.dump) streams[snap][s.volume] = s.dump;
}

const tapeFile = (n: number) => path.join(tape, `file000${n}.tar`);
const exportsOf = (vol: string, snaps: string[]) => exportShas(vol, snaps, o);

beforeAll(async () => {
  for (const [i, vol] of VOLS.entries()) {
    await setupOk(['volume', 'create', vol, '--size', '8M', '--max-snapshots', '8', '-q'], { env });
    const img = image(100 + i);
    await importAndSnap(vol, img, 's1');
    // level 1: a quarter of the blocks change
    const r = rng(200 + i);
    for (let k = 0; k < BLOCKS / 4; k++) randomBytes(BS).copy(img, Math.floor(r() * BLOCKS) * BS);
    await importAndSnap(vol, img, 's2');
    sourceSha[vol] = await exportsOf(vol, ['s1', 's2']);
  }
  // the level 0's members go out in turn (a test knob): on a loaded machine one stream could be ready whole before the others start, and the file would not show them interleaved
  const l0 = cliJson<MuxDumpJson>(['dump', ...VOLS, '--level', '0', '--snapshot', 's1', '--to', `tape:${tape}`, '--new-tape', '--multiplex', '--catalog', catalog], { ...o, env: { ...env, IMGSTREAM_TEST_MULTIPLEX_IN_TURN: '1' } });
  recordStreams('s1', l0);
  const l1 = cliJson<MuxDumpJson>(['dump', ...VOLS, '--level', '1', '--snapshot', 's2', '--to', `tape:${tape}`, '--multiplex', '--catalog', catalog], o);
  recordStreams('s2', l1);
}, 240_000);

describe('a multiplexed tape file is a tar archive', () => {
  it('holds every stream interleaved, one tape file per dump, listed by GNU tar and bsdtar', () => {
    expect(fs.readdirSync(tape).sort()).toEqual(['file0001.tar', 'file0002.tar']);
    for (const n of [1, 2]) {
      const f = tapeFile(n);
      expect(fs.statSync(f).size % 10240).toBe(0);
      const names = tar('tar', ['tf', f]).trim().split('\n');
      expect(tar('bsdtar', ['-tf', f]).trim().split('\n')).toEqual(names);
      expect(tar('bsdtar', ['-tvf', f]).trim().split('\n')).toHaveLength(names.length);
      expect(names[0]).toMatch(/^imgstream\/[0-9a-f-]{36}\/multiplex$/);
      expect(names.at(-1)).toBe(names[0].replace(/multiplex$/, 'log'));
      const snap = n === 1 ? 's1' : 's2';
      const ids = VOLS.map((v) => streams[snap][v].streamId);
      // each stream: label, parts in order, end; and the streams' members interleave
      for (const id of ids) {
        const mine = names.filter((x) => x.startsWith(`imgstream/${id}/`)).map((x) => x.slice(id.length + 11));
        expect(mine[0]).toBe('label');
        expect(mine.at(-1)).toBe('end');
        expect(mine.slice(1, -1)).toEqual(mine.slice(1, -1).map((_, k) => `part-${String(k).padStart(6, '0')}`));
      }
      const owners = names.slice(1, -1).map((x) => x.split('/')[1]);
      const runs = owners.filter((x, k) => k === 0 || x !== owners[k - 1]).length;
      if (n === 1) expect(runs, 'the streams interleave').toBeGreaterThan(3);
    }
  });

  it('tar xf, then cat of one stream\'s members in order, is that stream: it verifies', () => {
    for (const snap of ['s1', 's2']) {
      const out = path.join(root, `x-${snap}`);
      fs.mkdirSync(out);
      tar('tar', ['xf', tapeFile(snap === 's1' ? 1 : 2), '-C', out]);
      for (const vol of VOLS) {
        const d = streams[snap][vol];
        const dir = path.join(out, 'imgstream', d.streamId);
        const parts = fs.readdirSync(dir).filter((x) => x.startsWith('part-')).sort();
        const file = path.join(out, `${path.basename(vol)}.stream`);
        fs.writeFileSync(file, Buffer.concat(parts.map((p) => fs.readFileSync(path.join(dir, p)))));
        expect(fs.statSync(file).size).toBe(d.streamBytes);
        const v = cliJson<{ streams: Array<{ streamId: string; sha256: string }> }>(['verify', file], o);
        expect(v.streams[0]).toMatchObject({ streamId: d.streamId, sha256: d.sha256 });
      }
    }
  });

  it('tape log prints the backup log: every member with its source, place and size; --summary has per-source totals and idle time', async () => {
    const names = tar('tar', ['tvf', tapeFile(1)]).trim().split('\n');
    const r = cliJson<LogJson>(['tape', 'log', `tape:${tape}#1`, '--catalog', catalog], o);
    expect(r.log.entries).toHaveLength(names.length - 1); // every member but the log itself
    const sizes = names.slice(0, -1).map((l) => Number(l.split(/\s+/)[2]));
    expect(r.log.entries.map((e) => e.size)).toEqual(sizes);
    // each entry's offset is where tar finds that member: the member's header is there
    const fd = fs.openSync(tapeFile(1), 'r');
    try {
      for (const e of r.log.entries) {
        const h = Buffer.alloc(100);
        fs.readSync(fd, h, 0, 100, e.offset);
        expect(h.toString('utf8').replace(/\0.*$/s, '')).toBe(e.kind === 'multiplex' ? `imgstream/${e.stream}/multiplex` : e.kind === 'part' ? `imgstream/${e.stream}/part-${String(e.seq).padStart(6, '0')}` : `imgstream/${e.stream}/${e.kind}`);
        expect(e.record).toBe(Math.floor(e.offset / 10240));
      }
    } finally {
      fs.closeSync(fd);
    }
    expect(r.log.header.sources.map((s) => [s.volume.path, s.status, s.streamId])).toEqual(VOLS.map((v) => [v, 'complete', streams.s1[v].streamId]));
    const sum = cliJson<{ summary: { idleMs: number; idleFraction: number; sources: Array<{ bytes: number; parts: number; status: string }> } }>(['tape', 'log', `tape:${tape}#1`, '--summary'], o).summary;
    expect(sum.sources.map((s) => s.bytes)).toEqual(VOLS.map((v) => streams.s1[v].streamBytes));
    expect(sum.idleFraction).toBeGreaterThanOrEqual(0);
    expect(sum.idleFraction).toBeLessThanOrEqual(1);
    // the catalog keeps the same log
    const stored = JSON.parse(fs.readFileSync(path.join(`${catalog}.logs`, `${r.log.header.id}.json`), 'utf8'));
    expect(stored.files[0].log).toEqual(r.log);
    expect(ok(['tape', 'log', `tape:${tape}#1`, '--summary'], o).stdout).toMatch(/tape idle \(waiting for data\): [0-9.]+ s/);
    // the tape without a file number: the files it holds, to pick one from
    expectOneLineError(await refused(['tape', 'log', `tape:${tape}`], o), 'tape log of a whole tape', 4, /give one tape file of it, as tape:DIR#N \(it holds files? 1( to \d+)?\) \(imgstream tape log tape:\S+#\d+; imgstream verify tape:\S+ lists what each file holds\)$/);
    expectOneLineError(await refused(['tape', 'log', `tape:${tape}-missing`], o), 'tape log of no tape', 3, /no such tape directory/);
    // a tape file number past the last: the files it holds
    expectOneLineError(await refused(['tape', 'log', `tape:${tape}#99`], o), 'tape log of a file the tape lacks', 3, /has no tape file 99 \(it holds tape files 1 to \d+\)$/);
  });
});

describe('restore from multiplexed tape files', () => {
  it('refuses a tape file of several volumes unless --volume picks one', () => {
    const dst = path.join(root, 'ambiguous.vol');
    const r = runCli(['restore', '--from', `tape:${tape}#1`, '--to', dst], o);
    expectOneLineError(r, 'restore without --volume', 2, /holding the dumps of 3 volumes .* ambiguous .*--volume/);
    expect(fs.existsSync(dst)).toBe(false);
  });

  it('refuses a uuid --volume that two volumes on the tape share (a copy of a volume), naming them; their paths pick', async () => {
    const copy = path.join(root, 'a-copy.vol');
    fs.copyFileSync(VOLS[0], copy);
    const twins = path.join(root, 'twins-tape');
    const cat = path.join(root, 'twins-catalog.json');
    cliJson<MuxDumpJson>(['dump', VOLS[0], copy, '--level', '0', '--snapshot', 's1', '--to', `tape:${twins}`, '--new-tape', '--multiplex', '--catalog', cat], o);
    const uuid = cliJson<LogJson>(['tape', 'log', `tape:${twins}#1`], o).log.header.sources[0].volume.uuid;
    const dst = path.join(root, 'twins.vol');
    const r = runCli(['restore', '--from', `tape:${twins}#1`, '--volume', uuid.slice(0, 8), '--to', dst], o);
    expectOneLineError(r, 'restore by a uuid two volumes share', 2, new RegExp(`matches the dumps of 2 volumes: ${VOLS[0]}, ${copy}: which one to restore is ambiguous.*--volume PATH`));
    expect(fs.existsSync(dst)).toBe(false);
    ok(['restore', '--from', `tape:${twins}#1`, '--volume', copy, '--to', dst, '-q'], o);
    expect(await exportsOf(dst, ['s1'])).toEqual({ s1: sourceSha[VOLS[0]].s1 });
  }, 120_000);

  it('restores every chain exactly from the tape files alone, reading only its own members and the log', async () => {
    for (const [i, vol] of VOLS.entries()) {
      const dst = path.join(root, `alone-${i}.vol`);
      // by path for one, by uuid prefix for the others
      const pick = i === 0 ? vol : JSON.parse(tar('tar', ['xOf', tapeFile(1), `imgstream/${streams.s1[vol].streamId}/label`])).volume.uuid.slice(0, 8);
      const r = cliJson<{ streams: Array<{ top: string; mediaBytesRead: number }> }>(['restore', '--from', `tape:${tape}#1`, '--from', `tape:${tape}#2`, '--volume', pick, '--to', dst], o);
      expect(r.streams.map((s) => s.top)).toEqual(['s1', 's2']);
      expect(await exportsOf(dst, ['s1', 's2'])).toEqual(sourceSha[vol]);
      // bytes read: its own members (headers and padded data) and the log, nothing of the others
      for (const [k, snap] of ['s1', 's2'].entries()) {
        const log = cliJson<LogJson>(['tape', 'log', `tape:${tape}#${k + 1}`], o).log;
        const own = log.entries.filter((e) => e.stream === streams[snap][vol].streamId).reduce((n, e) => n + 512 + Math.ceil(e.size / 512) * 512, 0);
        const logMember = 512 + Math.ceil(Buffer.byteLength(tar('tar', ['xOf', tapeFile(k + 1), `imgstream/${log.header.id}/log`])) / 512) * 512;
        const label = 1024; // the tape file's multiplex label
        const read = r.streams[k].mediaBytesRead;
        expect(read, `${vol} ${snap}`).toBeGreaterThanOrEqual(streams[snap][vol].streamBytes);
        // + the window read back from the end to find the log: the end of the archive, the last record's padding
        expect(read, `${vol} ${snap}: bytes read`).toBeLessThanOrEqual(own + logMember + label + 2 * 10240 + 64 * 1024);
        expect(read).toBeLessThan(fs.statSync(tapeFile(k + 1)).size / 2);
      }
    }
  }, 120_000);

  it('restores every chain from the catalog (--as-of), and again after catalog rebuild', async () => {
    const rebuilt = path.join(root, 'rebuilt.json');
    const rb = cliJson<{ records: Array<{ id: string; media: { tapeFile: number; stream: string } }>; skipped: unknown[] }>(['catalog', 'rebuild', '--from', `tape:${tape}`, '--catalog', rebuilt], o);
    expect(rb.skipped).toEqual([]);
    expect(rb.records.map((r) => r.id).sort()).toEqual(['s1', 's2'].flatMap((s) => VOLS.map((v) => streams[s][v].streamId)).sort());
    for (const r of rb.records) expect(r.media.stream).toBe(r.id);
    // the backup logs are kept with the rebuilt catalog again
    for (const n of [1, 2]) {
      const log = cliJson<LogJson>(['tape', 'log', `tape:${tape}#${n}`], o).log;
      expect(JSON.parse(fs.readFileSync(path.join(`${rebuilt}.logs`, `${log.header.id}.json`), 'utf8')).files[0].log).toEqual(log);
    }
    for (const cat of [catalog, rebuilt]) {
      for (const [i, vol] of VOLS.entries()) {
        const dst = path.join(root, `cat-${path.basename(cat)}-${i}.vol`);
        ok(['restore', '--to', dst, '--as-of', 's2', '--volume', vol, '--catalog', cat, '-q'], o);
        expect(await exportsOf(dst, ['s1', 's2'])).toEqual(sourceSha[vol]);
      }
    }
  }, 120_000);
});

/** A copy of `file` as tape file 1 of a new tape directory. */
function damagedTape(name: string, data: Buffer): string {
  const dir = path.join(root, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'file0001.tar'), data);
  return dir;
}

describe('damaged multiplexed tape files', () => {
  it('cut short at random points: the streams that ended before the cut restore, the others are refused, catalog rebuild records only the whole ones', async () => {
    const data = fs.readFileSync(tapeFile(1));
    const log = cliJson<LogJson>(['tape', 'log', `tape:${tape}#1`], o).log;
    const endOf = (vol: string) => {
      const e = log.entries.find((x) => x.stream === streams.s1[vol].streamId && x.kind === 'end')!;
      return e.offset + 512 + e.size; // its data: the padding after it may be cut
    };
    const r = rng(4242);
    const ends = VOLS.map(endOf).sort((a, b) => a - b);
    // one cut between each pair of stream ends, and one before the first
    const firstPart = log.entries.find((e) => e.kind === 'part')!.offset;
    const cuts = [firstPart + 1 + Math.floor(r() * (ends[0] - firstPart - 1)), ends[0] + Math.floor(r() * (ends[1] - ends[0])), ends[1] + Math.floor(r() * (ends[2] - ends[1])), ends[2] + 1];
    for (const [k, cut] of cuts.entries()) {
      const dir = damagedTape(`cut-${k}`, data.subarray(0, cut));
      const whole = VOLS.filter((v) => endOf(v) <= cut);
      const v = runCli(['verify', `tape:${dir}`, '--json'], o);
      // the streams begun before the cut (their label there) that did not end before it
      const labelled = (vol: string) => {
        const e = log.entries.find((x) => x.stream === streams.s1[vol].streamId && x.kind === 'label')!;
        return e.offset + 512 + e.size <= cut;
      };
      const broken = VOLS.filter((x) => !whole.includes(x) && labelled(x));
      expect(v.code, `cut at ${cut}: ${v.stderr}`).toBe(broken.length > 0 ? 9 : 0);
      for (const b of broken) expect(v.stderr, `cut at ${cut}: ${b} named`).toMatch(new RegExp(`${path.basename(b).replace('.', '\\.')}[^;]*incomplete`));
      if (k === cuts.length - 1) {
        // the log itself is cut off: tape log prints the catalog's copy
        const tl = cliJson<LogJson & { from: string }>(['tape', 'log', `tape:${dir}#1`, '--catalog', catalog], o);
        expect(tl.from).toBe('catalog');
        expect(tl.log).toEqual(log);
        expectOneLineError(await refused(['tape', 'log', `tape:${dir}#1`, '--catalog', path.join(root, 'empty-catalog.json')], o), 'tape log without a log', 9, /backup log is missing or damaged/);
      }
      const rebuilt = path.join(root, `cut-${k}.json`);
      if (whole.length === 0) {
        // nothing whole to record: refused, the catalog not created
        const line = expectOneLineError(await refused(['catalog', 'rebuild', '--from', `tape:${dir}`, '--catalog', rebuilt], o), `cut at ${cut}: catalog rebuild`, 9, /nothing recorded: (the one stream read was|all \d+ streams read were) incomplete or damaged/);
        expect(line, 'parentheses nested').not.toMatch(/\([^)]*\(/);
        expect(fs.existsSync(rebuilt)).toBe(false);
      } else {
        const rb = cliJson<{ records: Array<{ id: string }> }>(['catalog', 'rebuild', '--from', `tape:${dir}`, '--catalog', rebuilt], o);
        expect(rb.records.map((x) => x.id).sort(), `cut at ${cut}`).toEqual(whole.map((x) => streams.s1[x].streamId).sort());
      }
      for (const vol of VOLS) {
        const dst = path.join(root, `cut-${k}-${path.basename(vol)}`);
        const rr = runCli(['restore', '--from', `tape:${dir}#1`, '--volume', vol, '--to', dst], o);
        if (whole.includes(vol)) {
          expect(rr.code, `cut at ${cut}: ${vol}: ${rr.stderr}`).toBe(0);
          expect(await exportsOf(dst, ['s1'])).toEqual({ s1: sourceSha[vol].s1 });
        } else if (rr.code !== 3) {
          expectOneLineError(rr, `cut at ${cut}: ${vol}`, 9);
          expect(fs.existsSync(dst)).toBe(false);
        }
      }
    }
  }, 180_000);

  it('bytes flipped inside one stream\'s part: that stream is refused, the others restore and are recorded', async () => {
    const data = fs.readFileSync(tapeFile(1));
    const log = cliJson<LogJson>(['tape', 'log', `tape:${tape}#1`], o).log;
    const r = rng(777);
    for (let k = 0; k < 3; k++) {
      const victim = VOLS[k];
      const parts = log.entries.filter((e) => e.stream === streams.s1[victim].streamId && e.kind === 'part');
      const p = parts[Math.floor(r() * parts.length)];
      const at = p.offset + 512 + Math.floor(r() * p.size);
      const copy = Buffer.from(data);
      for (let i = 0; i < 16; i++) copy[at + i] ^= 0x5a;
      const dir = damagedTape(`flip-${k}`, copy);
      const rebuilt = path.join(root, `flip-${k}.json`);
      const rb = cliJson<{ records: Array<{ id: string }>; skipped: Array<{ stream: string }> }>(['catalog', 'rebuild', '--from', `tape:${dir}`, '--catalog', rebuilt], o);
      expect(rb.records.map((x) => x.id).sort()).toEqual(VOLS.filter((v) => v !== victim).map((v) => streams.s1[v].streamId).sort());
      expect(rb.skipped).toHaveLength(1);
      for (const vol of VOLS) {
        const dst = path.join(root, `flip-${k}-${path.basename(vol)}`);
        const rr = runCli(['restore', '--from', `tape:${dir}#1`, '--volume', vol, '--to', dst], o);
        if (vol === victim) {
          expectOneLineError(rr, `flip in ${vol}`, 9);
          expect(fs.existsSync(dst)).toBe(false);
        } else {
          expect(rr.code, rr.stderr).toBe(0);
          expect(await exportsOf(dst, ['s1'])).toEqual({ s1: sourceSha[vol].s1 });
        }
      }
    }
  }, 180_000);
});

describe('faults while dumping', () => {
  it('a source that fails (no base for its level) fails alone: the others complete and are recorded, the exit code and message name it', async () => {
    const d = path.join(root, 'd.vol');
    await setupOk(['volume', 'create', d, '--size', '8M', '-q'], { env });
    await importAndSnap(d, image(9), 's2');
    const cat = path.join(root, 'fail-catalog.json');
    fs.copyFileSync(catalog, cat);
    const t = path.join(root, 'tape-fail');
    const r = runCli(['dump', VOLS[0], d, VOLS[1], '--level', '1', '--snapshot', 's2', '--to', `tape:${t}`, '--new-tape', '--multiplex', '--catalog', cat], { ...o, env: { ...env } });
    const line = expectOneLineError(r, 'one source failing', 3, new RegExp(`${path.basename(d)} failed: .*no dump of this volume below level 1`));
    expect(line).toMatch(/the other 2 dump\(s\) are complete and recorded/);
    // the volume named once, on the line and in the error
    expect(line).toContain(`${d} failed: no dump of this volume below level 1`);
    expect(r.stdout).toContain(`FAILED ${d}: no dump of this volume below level 1`);
    expect(r.stdout).toMatch(/dumped level 1 of .*a\.vol/);
    const recorded = cliJson<{ dumps: Array<{ volume: { path: string | null }; level: number }> }>(['catalog', 'list', '--catalog', cat], o).dumps;
    expect(recorded.filter((x) => x.level === 1).map((x) => x.volume.path).sort()).toEqual([...VOLS, VOLS[0], VOLS[1]].sort()); // 3 from before, 2 new
    const log = cliJson<LogJson>(['tape', 'log', `tape:${t}#1`], o).log;
    expect(log.header.sources.map((s) => s.status)).toEqual(['complete', 'failed', 'complete']);
    expect(log.header.sources[1].error).toMatch(/no dump of this volume below level 1/);
    expect(cliJson<{ streams: unknown[] }>(['verify', `tape:${t}`], o).streams).toHaveLength(2);
  }, 120_000);

  it('kill -9 during a multiplexed dump: no tape file, nothing recorded, and every stream of what was written is incomplete', async () => {
    const t = path.join(root, 'tape-killed');
    const cat = path.join(root, 'killed-catalog.json');
    const child = spawnCli(['dump', ...VOLS, '--level', '0', '--snapshot', 's2', '--to', `tape:${t}`, '--new-tape', '--multiplex', '--catalog', cat], { env: { ...env, IMGSTREAM_TEST_SOURCE_RATE: '1M' } });
    const done = finished(child, 120_000);
    // wait until every source has written to the (partial) tape file
    let partial = '';
    for (let i = 0; i < 400; i++) {
      await sleep(50);
      const p = fs.existsSync(t) ? fs.readdirSync(t).find((x) => x.includes('.partial-')) : undefined;
      if (p && fs.statSync(path.join(t, p)).size > 3.5 * (1 << 20)) {
        partial = path.join(t, p);
        break;
      }
    }
    expect(partial, 'the dump wrote its partial tape file').not.toBe('');
    const cut = fs.readFileSync(partial);
    child.kill('SIGKILL');
    const r = await done;
    expect(r.signal).toBe('SIGKILL');
    expect(fs.readdirSync(t).filter((x) => x.endsWith('.tar'))).toEqual([]);
    expect(fs.existsSync(cat) ? JSON.parse(fs.readFileSync(cat, 'utf8')).dumps : []).toEqual([]);
    // what had reached the tape, read as a tape file: every stream is named incomplete
    const dir = damagedTape('killed-copy', cut);
    const v = runCli(['verify', `tape:${dir}`], o);
    const line = expectOneLineError(v, 'verify of a killed multiplexed dump', 9, /3 streams failed/);
    for (const vol of VOLS) expect(line).toMatch(new RegExp(`${path.basename(vol).replace('.', '\\.')}[^;]*incomplete`));
    // killed again at random moments (planning, writing, closing): never a tape file, never a record
    const r3 = rng(9090);
    for (let k = 0; k < 3; k++) {
      const c = spawnCli(['dump', ...VOLS, '--level', '0', '--snapshot', 's2', '--to', `tape:${t}`, '--multiplex', '--catalog', cat], { env: { ...env, IMGSTREAM_TEST_SOURCE_RATE: '8M' } });
      const ended = finished(c, 120_000);
      await sleep(200 + Math.floor(r3() * 1500));
      c.kill('SIGKILL');
      const rk = await ended;
      if (rk.signal !== 'SIGKILL') {
        // it finished first: then it is complete and recorded, as a dump that was not killed
        expect(rk.code).toBe(0);
        break;
      }
      const tars = fs.readdirSync(t).filter((x) => x.endsWith('.tar'));
      const recorded = fs.existsSync(cat) ? (JSON.parse(fs.readFileSync(cat, 'utf8')).dumps as unknown[]) : [];
      if (tars.length > 0) {
        // killed after it published the tape file (recording, exiting): the file is whole,
        // and `catalog rebuild` records what the catalog did not
        expect(tars).toEqual(['file0001.tar']);
        expect(cliJson<{ streams: unknown[] }>(['verify', `tape:${t}`], o).streams).toHaveLength(3);
        break;
      }
      // a record only ever names a published tape file
      expect(recorded).toEqual([]);
    }
    // killed just after it published the tape file, before it recorded anything: the file
    // is whole, nothing names it yet, and catalog rebuild records its three streams
    const tp = path.join(root, 'tape-published');
    const catP = path.join(root, 'published-catalog.json');
    const kp = runCli(['dump', ...VOLS, '--level', '0', '--snapshot', 's2', '--to', `tape:${tp}`, '--new-tape', '--multiplex', '--catalog', catP, '-q'], { ...o, env: { ...env, IMGSTREAM_CRASH_AT: 'multiplex-published' } });
    expect(kp.signal).toBe('SIGKILL');
    expect(fs.readdirSync(tp)).toEqual(['file0001.tar']);
    expect(fs.existsSync(catP) ? JSON.parse(fs.readFileSync(catP, 'utf8')).dumps : []).toEqual([]);
    expect(cliJson<{ streams: unknown[] }>(['verify', `tape:${tp}`], o).streams).toHaveLength(3);
    expect(cliJson<{ records: unknown[] }>(['catalog', 'rebuild', '--from', `tape:${tp}`, '--catalog', catP], o).records).toHaveLength(3);
    // the next dump to the tape removes the partial files of the killed ones
    ok(['dump', VOLS[0], VOLS[1], '--level', '0', '--snapshot', 's2', '--to', `tape:${t}`, '--multiplex', '--catalog', cat, '-q'], o);
    expect(fs.readdirSync(t).filter((x) => !x.endsWith('.tar'))).toEqual([]);
    expect(fs.readdirSync(t).length).toBeGreaterThanOrEqual(1);
  }, 120_000);
});

describe('spanning tapes', () => {
  it('a multiplexed dump spans tapes with --tape-size; every stream restores exactly from the set and from the catalog', async () => {
    const tapes = [1, 2, 3].map((n) => path.join(root, `span-${n}`));
    const cat = path.join(root, 'span-catalog.json');
    const r = cliJson<MuxDumpJson>(['dump', ...VOLS, '--level', '0', '--snapshot', 's2', '--to', `tape:${tapes.join(',')}`, '--tape-size', '8M', '--new-tape', '--multiplex', '--catalog', cat], o);
    expect(r.files.length).toBeGreaterThanOrEqual(2);
    for (const f of r.files) expect(fs.statSync(path.join(f.tape, 'file0001.tar')).size).toBeLessThanOrEqual(8 << 20);
    const set = `tape:${tapes.slice(0, r.files.length).join(',')}`;
    const v = cliJson<{ streams: Array<{ streamId: string }> }>(['verify', set], o);
    expect(v.streams.map((s) => s.streamId).sort()).toEqual(r.sources.map((s) => s.dump!.streamId).sort());
    for (const [i, vol] of VOLS.entries()) {
      const dst = path.join(root, `span-${i}.vol`);
      ok(['restore', '--to', dst, '--as-of', 's2', '--volume', vol, '--catalog', cat, '-q'], o);
      expect(await exportsOf(dst, ['s2'])).toEqual({ s2: sourceSha[vol].s2 });
      const dst2 = path.join(root, `span-set-${i}.vol`);
      ok(['restore', '--from', set, '--volume', vol, '--to', dst2, '-q'], o);
      expect(await exportsOf(dst2, ['s2'])).toEqual({ s2: sourceSha[vol].s2 });
    }
    // tapes run out: one error naming the tape (not once per source), no tape file, nothing recorded
    const short = path.join(root, 'span-short');
    const shortCat = path.join(root, 'span-short.json');
    const r2 = runCli(['dump', ...VOLS, '--level', '0', '--snapshot', 's2', '--to', `tape:${short}`, '--tape-size', '8M', '--new-tape', '--multiplex', '--catalog', shortCat], o);
    expectOneLineError(r2, 'tapes run out', 4, new RegExp(`^imgstream: tape ${short} is full and no next tape was given`));
    expect(fs.existsSync(short), 'the tape --new-tape made is removed again').toBe(false);
    expect(fs.existsSync(shortCat)).toBe(false);
  }, 180_000);
});

describe('read front to back, as from a tape drive', () => {
  /** Runs the CLI while `file` is fed through a named pipe given as the tape (a pipe, like a drive, cannot seek). */
  async function throughPipe(file: string, args: (tape: string) => string[]) {
    const fifo = path.join(root, `pipe-${Date.now()}`);
    spawnSync('mkfifo', [fifo]);
    const feeder = spawnCliFeed(file, fifo);
    const r = runCli(args(`tape:${fifo}`), o);
    feeder.kill('SIGKILL'); // a refusal may stop reading before the end
    fs.rmSync(fifo, { force: true });
    return r;
  }

  it('restores one volume through a pipe, reading past the other streams, and refuses an ambiguous choice', async () => {
    for (const vol of VOLS) {
      const to = path.join(root, `${path.basename(vol)}.piped`);
      fs.rmSync(to, { force: true });
      for (const n of [1, 2]) {
        const r = await throughPipe(tapeFile(n), (t) => ['restore', '--from', t, '--volume', vol, '--to', to]);
        expect(r.code, `restore of ${vol} from tape file ${n} through a pipe: ${r.stderr}`).toBe(0);
      }
      expect(await exportsOf(to, ['s1', 's2'])).toEqual(sourceSha[vol]);
    }
    const amb = await throughPipe(tapeFile(1), (t) => ['restore', '--from', t, '--to', path.join(root, 'amb.vol')]);
    expectOneLineError(amb, 'restore of several volumes through a pipe', 2, /ambiguous/);
    // the tape file's first member lists the volumes: refused before any stream is read, whatever the members' order
    expect(amb.stderr).toContain(`holding the dumps of ${VOLS.length} volumes (${VOLS.join(', ')})`);
    expect(fs.existsSync(path.join(root, 'amb.vol'))).toBe(false);
  }, 120_000);
});

function spawnCliFeed(file: string, fifo: string) {
  return spawn('sh', ['-c', 'exec cat "$1" > "$2"', 'sh', file, fifo], { stdio: 'ignore' });
}
