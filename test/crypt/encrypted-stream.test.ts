// Encrypted image streams in process: the writer seals, the reader opens, over streams in
// memory. Round trips over random record sizes (fast-check) with and without zstd, a
// byte flipped anywhere refused, records swapped, dropped or taken from another stream
// refused at that record, the header's clear text authenticated, the wrong key and a
// missing key refused before any record is handed on, and nonces that never repeat over
// a 10,000-record stream. Key files: raw, hex, base64; anything else refused.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import * as S from '../../src/format/image-stream.js';
import { MemoryMedium } from '../../src/media/memory/memory-medium.js';
import { ImageStreamWriter } from '../../src/stream/stream-writer.js';
import { readImageStream, type ReadOptions, type StreamRecord } from '../../src/stream/stream-reader.js';
import { RecordCipher, type KeySource } from '../../src/crypt/index.js';
import { parseKeyFile } from '../../src/crypt/key-source.js';
import { ImgstreamError } from '../../src/core/errors.js';

const keyOf = (k: Buffer, path = 'k'): KeySource => ({ kind: 'key', key: k, path });
const KEY = keyOf(Buffer.alloc(32, 7));

const header = (bs: number, compress: boolean): S.StreamHeader => ({
  format: 'imgstream-stream',
  version: 1,
  streamId: '00000000-0000-4000-8000-000000000000',
  volume: { uuid: 'ab'.repeat(16), blockSize: bs, nblocks: 1 << 20, logicalSize: bs * 500, maxSnapshots: 8, mapDepth: 2 },
  level: 0,
  expression: 's1',
  base: null,
  top: { id: 1, name: 's1', generation: 3 },
  snapshots: [{ id: 1, name: 's1', shadow: false, master: false, createdMs: 0, mapRoot: 5, generation: 3, blocks: 10, mappedBlocks: 8 }],
  created: '2026-11-23T00:00:00.000Z',
  host: 'test',
  order: 'vbn',
  compression: compress ? { codec: 'zstd', level: 1 } : { codec: 'none' },
  image: { blocks: 6, bytes: 6 * bs, extents: 1 },
});

/** A stream of one PLANE record then DATA records of `sizes` blocks each (block contents from `seed`: half compressible). */
async function makeStream(key: KeySource | null, sizes: number[], opts: { bs?: number; compress?: boolean; seed?: number } = {}): Promise<{ stream: Buffer; blocks: Buffer[] }> {
  const bs = opts.bs ?? 4096;
  const media = new MemoryMedium();
  const h = header(bs, opts.compress ?? true);
  const w = new ImageStreamWriter(media.target(), { compression: h.compression, threads: 0, key });
  await w.start(h);
  await w.plane(S.encodePlane(0, [0], [Buffer.alloc(bs, 0x0f)], bs));
  let vbn = 0;
  let seed = opts.seed ?? 1;
  const blocks: Buffer[] = [];
  for (const n of sizes) {
    const data = Buffer.alloc(n * bs);
    for (let i = 0; i < data.length; i++) data[i] = i % 2 ? (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24 : 0;
    blocks.push(data);
    await w.data(S.encodeData(Array.from({ length: n }, () => vbn++), data, bs), n, n * bs);
  }
  await w.finish();
  return { stream: media.streams[0], blocks };
}

async function readAll(b: Buffer, opts: ReadOptions = { key: KEY }): Promise<StreamRecord[]> {
  const out: StreamRecord[] = [];
  async function* src() {
    for (let o = 0; o < b.length; o += 777) yield b.subarray(o, o + 777);
  }
  for await (const r of readImageStream(src(), 'test', undefined, opts)) out.push(r);
  return out;
}

/** Reads with `opts`; returns the records handed on before the error, and the error. */
async function readUntilError(b: Buffer, opts: ReadOptions = { key: KEY }): Promise<{ seen: StreamRecord[]; err: ImgstreamError }> {
  const seen: StreamRecord[] = [];
  try {
    async function* src() {
      yield b;
    }
    for await (const r of readImageStream(src(), 'test', undefined, opts)) seen.push(r);
  } catch (err) {
    if (!(err instanceof ImgstreamError)) throw err;
    return { seen, err };
  }
  throw new Error('the stream was accepted');
}

/** Offsets of the records after the preamble: [frame offset, total length]. */
function recordSpans(b: Buffer): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let o = S.PREAMBLE_BYTES; o < b.length; ) {
    const len = S.FRAME_BYTES + b.readUInt32LE(o + 4);
    out.push([o, len]);
    o += len;
  }
  return out;
}

function swap(b: Buffer, i: number, j: number): Buffer {
  const spans = recordSpans(b);
  expect(spans[i][1]).toBe(spans[j][1]);
  const out = Buffer.from(b);
  b.copy(out, spans[i][0], spans[j][0], spans[j][0] + spans[j][1]);
  b.copy(out, spans[j][0], spans[i][0], spans[i][0] + spans[i][1]);
  return out;
}

afterEach(() => vi.restoreAllMocks());

describe('encrypted stream codec', { timeout: 60_000 }, () => {
  it('round-trips records of random sizes, compressed or not, and refuses any flipped byte', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 9 }), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        async (sizes, compress, where, xor) => {
          const { stream, blocks } = await makeStream(KEY, sizes, { compress, bs: 512, seed: where + 1 });
          expect(stream.readUInt32LE(12) & S.FEATURE_ENCRYPTED).toBe(S.FEATURE_ENCRYPTED);
          // the blocks are not in the stream in clear
          expect(stream.includes(blocks[0].subarray(0, 64))).toBe(false);
          const recs = await readAll(stream);
          const data = recs.filter((r) => r.type === 'data');
          expect(data.map((r) => Buffer.from(r.data))).toEqual(blocks);
          expect(recs.at(-1)!.type).toBe('trailer');
          // a byte flipped anywhere: refused
          const bad = Buffer.from(stream);
          const at = where % bad.length;
          bad[at] ^= xor;
          await expect(readAll(bad)).rejects.toBeInstanceOf(ImgstreamError);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('refuses a record moved, dropped or taken from another stream, at that record', async () => {
    const { stream } = await makeStream(KEY, [3, 3, 3, 3], { compress: false });
    // records: header, AUTH, PLANE, DATA x4 (indices 3..6), trailer
    const swapped = await readUntilError(swap(stream, 3, 5));
    expect(swapped.err.code).toBe('corrupt');
    expect(swapped.err.message).toMatch(/record 4 at byte \d+ fails authentication/);
    expect(swapped.seen.filter((r) => r.type === 'data')).toHaveLength(0);

    const spans = recordSpans(stream);
    const dropped = Buffer.concat([stream.subarray(0, spans[6][0]), stream.subarray(spans[7][0])]);
    const d = await readUntilError(dropped);
    expect(d.err.code).toBe('corrupt');
    expect(d.err.message).toMatch(/trailer fails authentication|record counts/);

    const other = (await makeStream(KEY, [3, 3, 3, 3], { compress: false, seed: 99 })).stream;
    const oSpans = recordSpans(other);
    const mixed = Buffer.concat([stream.subarray(0, spans[4][0]), other.subarray(oSpans[4][0], oSpans[5][0]), stream.subarray(spans[5][0])]);
    const m = await readUntilError(mixed);
    expect(m.err.message).toMatch(/record 5 at byte \d+ fails authentication/);
    expect(m.seen.filter((r) => r.type === 'data')).toHaveLength(1);
  });

  it('authenticates the header kept in clear before handing it on', async () => {
    const { stream } = await makeStream(KEY, [2]);
    const [, [hAt, hLen]] = [null, recordSpans(stream)[0]];
    const text = stream.toString('utf8', hAt + S.FRAME_BYTES, hAt + hLen);
    expect(JSON.parse(text).encryption.cipher).toBe('aes-256-gcm');
    expect(text).not.toContain(Buffer.alloc(32, 7).toString('hex'));
    // a changed header with a valid crc32: only the AUTH record tells
    const changed = Buffer.from(stream);
    changed.write('tesu', stream.indexOf('"host":"test"') + 8, 'utf8');
    changed.writeUInt32LE(S.payloadCrc(changed.subarray(hAt + S.FRAME_BYTES, hAt + hLen)), hAt + 12);
    const r = await readUntilError(changed);
    expect(r.err.message).toMatch(/header fails authentication/);
    expect(r.seen).toHaveLength(0);
  });

  it('refuses the wrong key and a missing key before any record, and reads headers without the key for catalog rebuild', async () => {
    const { stream } = await makeStream(KEY, [2, 2]);
    const wrong = await readUntilError(stream, { key: keyOf(Buffer.alloc(32, 8), 'other.key') });
    expect(wrong.err.code).toBe('auth');
    expect(wrong.err.message).toMatch(/wrong key: other.key/);
    expect(wrong.seen).toHaveLength(0);
    const none = await readUntilError(stream, {});
    expect(none.err.code).toBe('auth');
    expect(none.err.message).toMatch(/the stream is encrypted/);
    expect(none.seen).toHaveLength(0);
    const blind = await readAll(stream, { withoutKey: 'headers' });
    expect(blind.map((r) => r.type)).toEqual(['header', 'trailer']);
    // a passphrase stream is not opened with a key file, nor with another passphrase
    const pass: KeySource = { kind: 'passphrase', passphrase: Buffer.from('correct horse battery'), path: 'p' };
    const ps = (await makeStream(pass, [1])).stream;
    expect((await readAll(ps, { key: pass })).filter((r) => r.type === 'data')).toHaveLength(1);
    expect((await readUntilError(ps, { key: { ...pass, passphrase: Buffer.from('wrong horse battery') } })).err.code).toBe('auth');
    expect((await readUntilError(ps)).err.code).toBe('auth');
    // an unencrypted stream read with a key is refused (it cannot be authenticated), before any record;
    // read with allowUnencrypted (a chain that mixes both) or without a key it is just read
    const plain = (await makeStream(null, [1])).stream;
    const refused = await readUntilError(plain, { key: KEY });
    expect(refused.err.code).toBe('auth');
    expect(refused.err.message).toMatch(/the stream is not encrypted, so the key given cannot authenticate it/);
    expect(refused.seen).toEqual([]);
    expect((await readAll(plain, { key: { ...KEY, allowUnencrypted: true } })).filter((r) => r.type === 'data')).toHaveLength(1);
    expect((await readAll(plain, {})).filter((r) => r.type === 'data')).toHaveLength(1);
  });

  it('never repeats a nonce over a 10,000-record stream', async () => {
    const sealed: string[] = [];
    const opened: string[] = [];
    const nonce = RecordCipher.prototype.nonce;
    let reading = false;
    vi.spyOn(RecordCipher.prototype, 'nonce').mockImplementation(function (this: RecordCipher, seq: number) {
      const n = nonce.call(this, seq);
      (reading ? opened : sealed).push(n.toString('hex'));
      return n;
    });
    const { stream } = await makeStream(KEY, Array.from({ length: 10_000 }, () => 1), { bs: 64, compress: false });
    reading = true;
    const recs = await readAll(stream);
    expect(recs.filter((r) => r.type === 'data')).toHaveLength(10_000);
    // AUTH, PLANE, 10,000 DATA, trailer
    expect(sealed).toHaveLength(10_003);
    expect(new Set(sealed).size).toBe(sealed.length);
    expect(opened).toEqual(sealed);
    // another stream under the same key: other nonces (another prefix) and another record key
    reading = false;
    const before = sealed.length;
    await makeStream(KEY, [1]);
    expect(sealed.slice(before).some((n) => sealed.slice(0, before).includes(n))).toBe(false);
  });

  it('refuses to seal twice with one sequence number', async () => {
    const enc = (await import('../../src/crypt/index.js')).newStreamEncryption(KEY);
    const c = RecordCipher.open(KEY, enc, Buffer.alloc(32), 's');
    c.seal(3, 3, 4, Buffer.from('a'));
    expect(() => c.seal(3, 3, 4, Buffer.from('b'))).toThrow(/nonce would repeat/);
    expect(() => c.seal(2, 3, 4, Buffer.from('b'))).toThrow(/nonce would repeat/);
  });
});

describe('key files', () => {
  const k = randomBytes(32);
  it('takes 32 raw bytes, 64 hex digits or base64, with a trailing newline', () => {
    expect(parseKeyFile(k, 'f')).toEqual(k);
    expect(parseKeyFile(Buffer.from(k.toString('hex') + '\n'), 'f')).toEqual(k);
    expect(parseKeyFile(Buffer.from(k.toString('hex').toUpperCase()), 'f')).toEqual(k);
    expect(parseKeyFile(Buffer.from(k.toString('base64') + '\n'), 'f')).toEqual(k);
  });
  it('refuses anything else, naming the file and not its contents', () => {
    for (const bad of [Buffer.alloc(0), Buffer.alloc(31), Buffer.from('ab'.repeat(31)), Buffer.from('secret passphrase\n')]) {
      const e = (() => {
        try {
          parseKeyFile(bad, '/etc/k');
        } catch (err) {
          return err as ImgstreamError;
        }
        throw new Error('accepted');
      })();
      expect(e.code).toBe('invalid-input');
      expect(e.message).toMatch(/^\/etc\/k: not a key file/);
      expect(e.message).not.toContain('secret');
    }
  });
});
