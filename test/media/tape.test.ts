// What only tapes promise, beyond the media contract: tape files GNU tar reads, fixed
// records, spanning and picking a dump by tape file number, a clear error when the tapes
// run out, kill -9 of a writer, and damaged tape files that end in a named error.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { CorruptError, InvalidInputError, NotFoundError } from '../../src/core/errors.js';
import { parseTapeSpec, tapeSource, tapeTarget, type MediaPosition, type TapeTargetOptions } from '../../src/media/index.js';
import { collect, readAll, streamBytes, within, writeInPieces } from './stream-data.js';
import { buildTapeModule, kill9, startSlowWriter } from './tape-child.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-tape-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (name: string) => path.join(root, `${name}-${dirs++}`);
const MiB = 1 << 20;

async function dump(opts: TapeTargetOptions, data: Buffer, sizes = [MiB - 1, 3, 2 * MiB]): Promise<MediaPosition> {
  const t = tapeTarget(opts);
  await writeInPieces(t, data, sizes);
  return t.finish();
}

/** Every name in DIR: tape files and anything else (partials). */
const entries = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).sort() : []);

describe('tape files are tar archives', () => {
  it('lists label, parts and end with GNU tar, and tar extracts the stream', async () => {
    const dir = freshDir('tar');
    const data = streamBytes(2 * MiB + 300_000, 1);
    const pos = await dump({ tapes: [dir], streamId: 'vm1-l0', label: 'nightly vm1' }, data);
    expect(pos).toEqual({ kind: 'tape', location: path.resolve(dir), tapeFile: 1, tapes: [path.resolve(dir)] });
    const file = path.join(dir, 'file0001.tar');
    const listing = execFileSync('tar', ['tvf', file], { encoding: 'utf8' }).trim().split('\n');
    expect(listing.map((l) => l.split(/\s+/).pop())).toEqual([
      'imgstream/vm1-l0/label',
      'imgstream/vm1-l0/part-000000',
      'imgstream/vm1-l0/part-000001',
      'imgstream/vm1-l0/part-000002',
      'imgstream/vm1-l0/end',
    ]);
    expect(listing[1]).toContain(String(MiB));

    const out = path.join(root, `extract-${dirs++}`);
    fs.mkdirSync(out);
    execFileSync('tar', ['xf', file, '-C', out]);
    const member = (n: string) => fs.readFileSync(path.join(out, 'imgstream/vm1-l0', n));
    const parts = ['part-000000', 'part-000001', 'part-000002'].map(member);
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    const label = JSON.parse(member('label').toString());
    expect(label).toMatchObject({ format: 'imgstream-tape', streamId: 'vm1-l0', label: 'nightly vm1', sequence: 1, firstPart: 0, recordSize: 10240, host: os.hostname() });
    expect(Date.parse(label.created)).not.toBeNaN();
    expect(JSON.parse(member('end').toString())).toMatchObject({ streamId: 'vm1-l0', parts: 3, bytes: data.length });
  });

  it('numbers the dumps on a tape file0001.tar, file0002.tar, ... and creates the tape directory', async () => {
    const dir = path.join(freshDir('numbers'), 'not', 'yet');
    const positions = [];
    for (let i = 0; i < 3; i++) positions.push(await dump({ tapes: [dir], streamId: `d${i}` }, streamBytes(1000 * i, i)));
    expect(positions.map((p) => p.tapeFile)).toEqual([1, 2, 3]);
    expect(entries(dir)).toEqual(['file0001.tar', 'file0002.tar', 'file0003.tar']);
  });
});

describe('fixed records', () => {
  for (const recordSize of [10240, 4096, 512]) {
    it(`writes every record of ${recordSize} bytes in one write of exactly that size, the last one zero-padded`, async () => {
      const writeSync = fs.writeSync.bind(fs);
      const writes: Array<{ ino: number; length: number }> = [];
      const spy = vi.spyOn(fs, 'writeSync').mockImplementation(((fd: number, buffer: Buffer, offset?: number, length?: number) => {
        const n = typeof length === 'number' ? length : buffer.length - (typeof offset === 'number' ? offset : 0);
        writes.push({ ino: fs.fstatSync(fd).ino, length: n });
        return writeSync(fd, buffer, offset, length);
      }) as typeof fs.writeSync);
      const tapes = [freshDir('rec-a'), freshDir('rec-b'), freshDir('rec-c')];
      const tapeSize = 1_000_000;
      let pos: MediaPosition;
      try {
        pos = await dump({ tapes, tapeSize, recordSize, streamId: 'records' }, streamBytes(2_500_000, 2), [1, 70_000, 999_999]);
      } finally {
        spy.mockRestore();
      }
      expect(pos.tapes).toEqual(tapes.map((t) => path.resolve(t)));
      for (const t of tapes) {
        const file = path.join(t, 'file0001.tar');
        const st = fs.statSync(file);
        expect(st.size % recordSize).toBe(0);
        expect(st.size).toBeLessThanOrEqual(tapeSize);
        const mine = writes.filter((w) => w.ino === st.ino);
        expect(mine.length).toBe(st.size / recordSize);
        expect(mine.every((w) => w.length === recordSize)).toBe(true);
        const bytes = fs.readFileSync(file);
        expect(bytes.subarray(bytes.length - 1024).every((b) => b === 0)).toBe(true); // end of archive
      }
      // the tape is used up to its last whole record but one tape file's closing
      expect(fs.statSync(path.join(tapes[0], 'file0001.tar')).size).toBeGreaterThan(tapeSize - recordSize - 4096);
    });
  }

  it('refuses a record size that is not a multiple of 512', () => {
    expect(() => tapeTarget({ tapes: [freshDir('bad')], recordSize: 1000, streamId: 'x' })).toThrow(InvalidInputError);
    expect(() => tapeTarget({ tapes: [freshDir('bad')], recordSize: 0, streamId: 'x' })).toThrow(/multiple of 512/);
  });
});

describe('spanning tapes', () => {
  const tapes = [0, 1, 2].map(() => '');
  const data = { a: streamBytes(200_000, 10), b: streamBytes(2_600_000, 11), c: streamBytes(150_000, 12) };
  const pos: Record<string, MediaPosition> = {};
  const tapeSize = 1_200_000;

  beforeAll(async () => {
    const set = freshDir('span');
    for (let i = 0; i < 3; i++) tapes[i] = path.join(set, `tape${i + 1}`);
    pos.a = await dump({ tapes: [tapes[0]], tapeSize, streamId: 'a' }, data.a);
    pos.b = await dump({ tapes, tapeSize, streamId: 'b' }, data.b);
    pos.c = await dump({ tapes: [tapes[2]], tapeSize, streamId: 'c' }, data.c);
  });

  it('spreads a dump over three tapes and reads the whole set back in order', async () => {
    expect(pos.b).toEqual({ kind: 'tape', location: tapes[0], tapeFile: 2, tapes });
    expect(pos.c).toEqual({ kind: 'tape', location: tapes[2], tapeFile: 2, tapes: [tapes[2]] });
    expect(tapes.map(entries)).toEqual([['file0001.tar', 'file0002.tar'], ['file0001.tar'], ['file0001.tar', 'file0002.tar']]);
    for (const t of tapes) expect(fs.readdirSync(t).reduce((n, f) => n + fs.statSync(path.join(t, f)).size, 0)).toBeLessThanOrEqual(tapeSize);
    const cont = execFileSync('tar', ['tf', path.join(tapes[0], 'file0002.tar')], { encoding: 'utf8' }).trim().split('\n');
    expect(cont[0]).toBe('imgstream/b/label');
    expect(cont[cont.length - 1]).toBe('imgstream/b/continued');

    const back = await readAll([tapeSource(parseTapeSpec(`tape:${tapes.join(',')}`))]);
    expect(back.map((s) => s.name)).toEqual([`tape ${tapes[0]} file 1`, `tape ${tapes[0]} file 2`, `tape ${tapes[2]} file 2`]);
    expect(back.map((s) => s.position)).toEqual([pos.a, pos.b, pos.c]);
    expect(back[0].bytes.equals(data.a)).toBe(true);
    expect(back[1].bytes.equals(data.b)).toBe(true);
    expect(back[2].bytes.equals(data.c)).toBe(true);
  });

  it('picks one dump with tape:DIR#N', async () => {
    const b = await readAll([tapeSource(parseTapeSpec(`tape:${tapes[0]}#2,${tapes[1]},${tapes[2]}`))]);
    expect(b).toHaveLength(1);
    expect(b[0].position).toEqual(pos.b);
    expect(b[0].bytes.equals(data.b)).toBe(true);
    const a = await readAll([tapeSource(parseTapeSpec(`tape:${tapes[0]}#1`))]);
    expect(a.map((s) => s.bytes.equals(data.a))).toEqual([true]);
    const c = await readAll([tapeSource(parseTapeSpec(`tape:${tapes[2]}#2`))]);
    expect(c.map((s) => s.bytes.equals(data.c))).toEqual([true]);
    await expect(readAll([tapeSource(parseTapeSpec(`tape:${tapes[0]}#3`))])).rejects.toThrow(NotFoundError);
    // a tape file that continues a dump is not a dump of its own
    await expect(readAll([tapeSource(parseTapeSpec(`tape:${tapes[1]}#1`))])).rejects.toThrow(/continues stream b from an earlier tape/);
  });

  it('skips continuations on a later tape read alone, and names the missing tape of a dump read without it', async () => {
    const third = await readAll([tapeSource({ tapes: [tapes[2]] })]);
    expect(third.map((s) => s.position)).toEqual([pos.c]);

    const streams = tapeSource({ tapes: [tapes[0]] }).streams()[Symbol.asyncIterator]();
    expect((await collect((await streams.next()).value.bytes)).equals(data.a)).toBe(true);
    const b = (await streams.next()).value;
    await expect(collect(b.bytes)).rejects.toThrow(/continues on a next tape \(tape 2 of the dump\), which was not given/);

    // tapes out of order: refused before reading, naming the misplaced tape by its label
    const swapped = tapeSource({ tapes: [tapes[0], tapes[2], tapes[1]], file: 2 });
    await expect(readAll([swapped])).rejects.toThrow(InvalidInputError);
    await expect(readAll([tapeSource({ tapes: [tapes[0], tapes[2], tapes[1]], file: 2 })])).rejects.toThrow(/\(tape 3 of dump b\) is given as tape 2 of the set, but must come right after tape .* \(tape 2 of that dump\)/);

    // the same tape twice: refused, not read twice
    await expect(readAll([tapeSource({ tapes: [tapes[0], tapes[0]] })])).rejects.toThrow(/is given twice \(as tapes 1 and 2 of the set\)/);
    // a tape of another set after a complete one: refused before anything is read, never skipped in silence
    const lone = freshDir('lone');
    await dump({ tapes: [lone], streamId: 'lone' }, streamBytes(3000, 9));
    await expect(readAll([tapeSource({ tapes: [lone, tapes[1]] })])).rejects.toThrow(/\(tape 2 of dump b\) is given after tape .*lone-\d+, but continues a dump none of whose earlier tapes was given: it is not part of this set/);
  });

  it('starts a dump on the next tape when the first is too full for a tape file', async () => {
    const t1 = freshDir('full-1');
    const t2 = freshDir('full-2');
    await dump({ tapes: [t1], tapeSize: 100_000, streamId: 'filler' }, streamBytes(85_000, 3));
    const p = await dump({ tapes: [t1, t2], tapeSize: 100_000, streamId: 'next' }, streamBytes(1000, 4));
    expect(p).toEqual({ kind: 'tape', location: path.resolve(t2), tapeFile: 1, tapes: [path.resolve(t2)] });
    const back = await readAll([tapeSource({ tapes: [t1, t2] })]);
    expect(back.map((s) => s.bytes.length)).toEqual([85_000, 1000]);
  });
});

describe('abort', () => {
  it('removes every tape file of a spanning dump, on every tape', async () => {
    const [a, b, c] = [freshDir('abort-a'), freshDir('abort-b'), freshDir('abort-c')];
    const kept = await dump({ tapes: [a], streamId: 'kept' }, streamBytes(5000, 40));
    const target = tapeTarget({ tapes: [a, b, c], tapeSize: 300_000, streamId: 'aborted', partBytes: 65536 });
    await writeInPieces(target, streamBytes(700_000, 41), [65536]);
    expect([a, b, c].map((t) => entries(t).length)).toEqual([2, 1, 1]); // the kept dump, and partials of this one
    await target.abort();
    expect([a, b, c].map(entries)).toEqual([['file0001.tar'], [], []]);
    // the new tapes it made for itself are gone too: a directory stays only with a tape file in it
    expect([a, b, c].map((t) => fs.existsSync(t))).toEqual([true, false, false]);
    await expect(target.write(Buffer.alloc(1))).rejects.toThrow(/already aborted/);
    expect((await readAll([tapeSource({ tapes: [a] })])).map((s) => s.position)).toEqual([kept]);
  });

  it('does not undo a finished dump, and a finished target takes no more bytes', async () => {
    const t = freshDir('finished');
    const target = tapeTarget({ tapes: [t], streamId: 'done' });
    await target.write(Buffer.from('abc'));
    await target.finish();
    await target.abort();
    await expect(target.write(Buffer.alloc(1))).rejects.toThrow(/already finished/);
    expect(entries(t)).toEqual(['file0001.tar']);
    expect((await readAll([tapeSource({ tapes: [t] })]))[0].bytes.toString()).toBe('abc');
  });
});

describe('running out of tapes', () => {
  it('fails a dump with no next tape with a clear error and leaves no file behind', async () => {
    const t = freshDir('out');
    const target = tapeTarget({ tapes: [t], tapeSize: 300_000, streamId: 'big' });
    const err = await writeInPieces(target, streamBytes(2 * MiB, 5), [MiB]).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err.message).toBe(`tape ${t} is full and no next tape was given`);
    expect(err.hint).toBe('give more tapes: tape:DIR1,DIR2,...');
    await expect(target.write(Buffer.alloc(1))).rejects.toBe(err);
    await expect(target.finish()).rejects.toBe(err);
    expect(entries(t)).toEqual([]);
    await target.abort();
  });

  it('asks nextTape for tape N, and a spanning dump it gives up on leaves nothing on any tape', async () => {
    const [a, b, c] = [freshDir('ask-a'), freshDir('ask-b'), freshDir('ask-c')];
    const asked: number[] = [];
    const target = tapeTarget({ tapes: [a, b], tapeSize: 400_000, streamId: 'span', nextTape: async (n) => (asked.push(n), n === 3 ? c : null) });
    const err = await writeInPieces(target, streamBytes(3 * MiB, 6), [65536]).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidInputError);
    expect(err.message).toBe(`tape ${c} is full and no next tape was given`);
    expect(asked).toEqual([3, 4]);
    expect([a, b, c].map(entries)).toEqual([[], [], []]);
  });

  it('reads back a dump spanned onto tapes nextTape gave', async () => {
    const [a, b] = [freshDir('given-a'), freshDir('given-b')];
    const data = streamBytes(600_000, 7);
    const p = await dump({ tapes: [a], tapeSize: 400_000, streamId: 'given', nextTape: async () => b }, data);
    expect(p.tapes).toEqual([path.resolve(a), path.resolve(b)]);
    const back = await readAll([tapeSource({ tapes: [a, b] })]);
    expect(back[0].bytes.equals(data)).toBe(true);
  });

  it('refuses a tape too small for one tape file', async () => {
    const t = freshDir('tiny');
    const target = tapeTarget({ tapes: [t], tapeSize: 10_000, streamId: 'tiny' });
    await target.write(Buffer.alloc(10));
    await expect(target.finish()).rejects.toThrow(/is too small: 10000 bytes cannot hold one tape file/);
    expect(entries(t)).toEqual([]);
  });

  it('refuses to continue a dump on a tape that already holds tape files', async () => {
    const [a, b] = [freshDir('busy-a'), freshDir('busy-b')];
    await dump({ tapes: [b], streamId: 'other' }, streamBytes(1000, 8));
    const target = tapeTarget({ tapes: [a, b], tapeSize: 300_000, streamId: 'span' });
    await expect(writeInPieces(target, streamBytes(MiB, 9), [65536])).rejects.toThrow(/already holds 1 tape file\(s\)/);
    expect([a, b].map(entries)).toEqual([[], ['file0001.tar']]);
  });
});

describe('kill -9 of a writer', () => {
  let tapeModule: string;
  beforeAll(() => {
    tapeModule = buildTapeModule(freshDir('build'));
  });

  it('leaves no tape file a reader yields, and the next dump takes the next number', async () => {
    const t = freshDir('killed');
    const before = streamBytes(70_000, 20);
    await dump({ tapes: [t], streamId: 'before' }, before);
    const child = await startSlowWriter(tapeModule, { tapes: [t], streamId: 'killed', partBytes: 65536 }, 2 * MiB);
    const partial = `.file0002.tar.partial-${child.pid}`;
    expect(entries(t)).toEqual([partial, 'file0001.tar']);
    expect(fs.statSync(path.join(t, partial)).size).toBeGreaterThan(MiB); // the killed dump had written records
    expect(await kill9(child)).toBe('SIGKILL');

    let back = await readAll([tapeSource({ tapes: [t] })]);
    expect(back.map((s) => s.position.tapeFile)).toEqual([1]);

    const after = streamBytes(90_000, 21);
    const p = await dump({ tapes: [t], streamId: 'after' }, after);
    expect(p.tapeFile).toBe(2);
    expect(entries(t)).toEqual(['file0001.tar', 'file0002.tar']); // the dead writer's partial is gone
    back = await readAll([tapeSource({ tapes: [t] })]);
    expect(back.map((s) => s.bytes.length)).toEqual([before.length, after.length]);
    expect(back[1].bytes.equals(after)).toBe(true);
  });

  it('leaves nothing readable when killed after it spanned onto a second tape', async () => {
    const [a, b] = [freshDir('killed-a'), freshDir('killed-b')];
    const child = await startSlowWriter(tapeModule, { tapes: [a, b], tapeSize: 500_000, streamId: 'spanning', partBytes: 65536 }, 700_000);
    expect(entries(a)).toEqual([`.file0001.tar.partial-${child.pid}`]); // closed, continued, but not published
    expect(entries(b)).toEqual([`.file0001.tar.partial-${child.pid}`]);
    await kill9(child);
    expect(await readAll([tapeSource({ tapes: [a, b] })])).toEqual([]);

    const data = streamBytes(800_000, 22);
    const p = await dump({ tapes: [a, b], tapeSize: 500_000, streamId: 'again' }, data);
    expect(p).toMatchObject({ tapeFile: 1, tapes: [path.resolve(a), path.resolve(b)] });
    const back = await readAll([tapeSource({ tapes: [a, b] })]);
    expect(back).toHaveLength(1);
    expect(back[0].bytes.equals(data)).toBe(true);
  });
});

describe('damaged tape files', () => {
  const id = 'damage';
  const data = streamBytes(2 * MiB + 100_000, 30);
  let good: Buffer;
  beforeAll(async () => {
    const t = freshDir('good');
    await dump({ tapes: [t], streamId: id }, data);
    good = fs.readFileSync(path.join(t, 'file0001.tar'));
  });

  const headerOf = (member: string) => good.indexOf(`imgstream/${id}/${member}`);
  const cases: Array<[string, RegExp, () => Buffer]> = [
    ['empty', /empty or damaged tape file/, () => Buffer.alloc(0)],
    ['cut inside the label', /truncated: the tape file ends inside a tar member/, () => good.subarray(0, 600)],
    ['cut inside a part', /truncated: the tape file ends inside a tar member/, () => good.subarray(0, 1_500_001)],
    ['cut at a record boundary inside a part', /truncated: the tape file ends inside a tar member/, () => good.subarray(0, 100 * 10240)],
    ['cut before the end member', /truncated: the tape file ends without its end or continued member/, () => good.subarray(0, headerOf('end'))],
    [
      'a part header with a bad checksum',
      /damaged tar header/,
      () => {
        const b = Buffer.from(good);
        b[headerOf('part-000001') + 20] ^= 0x55;
        return b;
      },
    ],
    [
      'parts out of order',
      /part 3 where part 1 belongs/,
      () => {
        const b = Buffer.from(good);
        const at = headerOf('part-000001');
        b.write('3', at + `imgstream/${id}/part-00000`.length); // part-000001 becomes part-000003
        fixChecksum(b, at);
        return b;
      },
    ],
    [
      'an end member that does not match the parts',
      /its end member counts 3 parts and 9[0-9]+ bytes, but 3 parts and [0-9]+ bytes were read/,
      () => {
        const b = Buffer.from(good);
        const at = b.indexOf('"bytes":', headerOf('end') + 512) + '"bytes":'.length;
        b.write('9', at);
        return b;
      },
    ],
  ];

  for (const [what, message, damage] of cases) {
    it(`reports ${what} as a CorruptError naming the tape file, without hanging`, async () => {
      const t = freshDir('damaged');
      fs.mkdirSync(t);
      fs.writeFileSync(path.join(t, 'file0001.tar'), damage());
      const got: Buffer[] = [];
      const outcome = await within(
        (async () => {
          for await (const s of tapeSource({ tapes: [t] }).streams()) for await (const c of s.bytes) got.push(Buffer.from(c));
        })().then(
          () => null,
          (e) => e,
        ),
        10_000,
        what,
      );
      expect(outcome).toBeInstanceOf(CorruptError);
      expect(outcome.message).toContain(`tape ${t} file 1: `);
      expect(outcome.message).toMatch(message);
      const read = Buffer.concat(got);
      expect(read.length).toBeLessThanOrEqual(data.length);
      expect(read.equals(data.subarray(0, read.length))).toBe(true); // never a wrong byte
    });
  }
});

/** Recomputes a ustar header's checksum at `at` (after a deliberate edit). */
function fixChecksum(b: Buffer, at: number): void {
  b.fill(0x20, at + 148, at + 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += b[at + i];
  b.write(sum.toString(8).padStart(6, '0') + '\0 ', at + 148, 'latin1');
}

describe('parseTapeSpec', () => {
  it('reads tape:DIR, a tape set, and a tape file number on the first tape', () => {
    expect(parseTapeSpec('tape:/tapes/t1')).toEqual({ tapes: ['/tapes/t1'] });
    expect(parseTapeSpec('tape:t1,t2,/dev/nst0')).toEqual({ tapes: ['t1', 't2', '/dev/nst0'] });
    expect(parseTapeSpec('tape:t1#12')).toEqual({ tapes: ['t1'], file: 12 });
    expect(parseTapeSpec('tape:t1#2,t2')).toEqual({ tapes: ['t1', 't2'], file: 2 });
  });

  it.each([
    ['/tapes/t1', /does not start with tape:/],
    ['tape:', /tape 1 has an empty name/],
    ['tape:t1,,t2', /tape 2 has an empty name/],
    ['tape:t1#0', /"0" is not a positive integer/],
    ['tape:t1#x', /"x" is not a positive integer/],
    ['tape:t1#', /"" is not a positive integer/],
    ['tape:t1,t2#2', /belongs to the first tape only/],
  ])('refuses %s', (spec, message) => {
    expect(() => parseTapeSpec(spec)).toThrow(InvalidInputError);
    expect(() => parseTapeSpec(spec)).toThrow(message);
  });
});
