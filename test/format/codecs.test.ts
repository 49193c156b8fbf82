// Round-trip and corruption tests of the pure byte codecs: volume root record, journal
// index, snapshot table entry, and every image stream record; plus the stream reader over
// streams made by the writer, with single-byte corruption anywhere detected.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NewerFeatureError } from '../../src/core/errors.js';
import { decodeRootRecord, encodeRootRecord, type RootRecord } from '../../src/format/volume-root.js';
import { decodeJournalIndex, encodeJournalIndex, entriesPerIndexBlock } from '../../src/format/journal-index.js';
import { decodeSnapshotEntry, encodeSnapshotEntry, type SnapshotEntry } from '../../src/format/snapshot-entry.js';
import * as S from '../../src/format/image-stream.js';
import { MemoryMedium } from '../../src/media/memory/memory-medium.js';
import { ImageStreamWriter } from '../../src/stream/stream-writer.js';
import { readImageStream, type StreamRecord } from '../../src/stream/stream-reader.js';

const u53 = fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER });
const u32 = fc.integer({ min: 0, max: 0xffffffff });

const rootArb: fc.Arbitrary<RootRecord> = fc.record({
  blockSize: fc.constantFrom(4096, 65536, 1 << 20),
  nblocks: u53,
  logicalSize: u53,
  maxSnapshots: fc.integer({ min: 1, max: 65535 }),
  mapDepth: fc.integer({ min: 1, max: 8 }),
  uuid: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b).toString('hex')),
  createdMs: fc.integer({ min: 0, max: 2 ** 45 }),
  flags: fc.integer({ min: 0, max: 7 }), // block device, mirror, broken off (bit 3 is the taint flag, its own field)
  generation: u53,
  cpTimeMs: fc.integer({ min: 0, max: 2 ** 45 }),
  mapRoot: u53,
  journalHead: u53,
  journalCount: u53,
  journalCrc: u32,
  moaCurrent: fc.integer({ min: 0, max: 1 }),
  nextSnapshotId: u53,
  allocCursor: u53,
  usedBlocks: u53,
  mappedBlocks: u53,
  moaSwaps: u53,
  taintedShadows: fc.array(u53, { maxLength: 43 }),
  allShadowsTainted: fc.boolean(),
}).map((r) => (r.allShadowsTainted ? { ...r, taintedShadows: [] } : r)); // "all" lists none

describe('volume root record', () => {
  it('round-trips and detects any flipped byte', () => {
    fc.assert(
      fc.property(rootArb, fc.integer({ min: 0, max: 511 }), fc.integer({ min: 1, max: 255 }), (r, at, x) => {
        const b = encodeRootRecord(r);
        const d = decodeRootRecord(b);
        expect(d).toEqual({ ok: true, record: r });
        b[at] ^= x;
        expect(decodeRootRecord(b).ok).toBe(false);
      }),
    );
  });
});

describe('journal index', () => {
  it('round-trips entries and the next pointer; rejects a damaged magic', () => {
    fc.assert(
      fc.property(fc.array(fc.record({ target: u53, vbn: u53, crc: u32 }), { maxLength: entriesPerIndexBlock(4096) }), u53, (entries, next) => {
        const b = encodeJournalIndex(4096, entries, next);
        expect(decodeJournalIndex(b)).toEqual({ entries, next });
        b[0] ^= 1;
        expect(decodeJournalIndex(b)).toBeNull();
      }),
    );
  });
});

describe('snapshot table entry', () => {
  const entryArb: fc.Arbitrary<SnapshotEntry> = fc.record({
    slot: fc.integer({ min: 0, max: 100 }),
    id: u53,
    name: fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$/),
    shadow: fc.boolean(),
    master: fc.boolean(),
    createdMs: fc.integer({ min: 0, max: 2 ** 45 }),
    mapRoot: u53,
    generation: u53,
    blocks: u53,
    mappedBlocks: u53,
    reusedBlocks: u53,
  });
  it('round-trips, reads a free entry as null, and throws on a damaged one', () => {
    fc.assert(
      fc.property(entryArb, fc.integer({ min: 8, max: 255 }), fc.integer({ min: 1, max: 255 }), (e, at, x) => {
        const b = encodeSnapshotEntry(e);
        expect(decodeSnapshotEntry(b, e.slot)).toEqual(e);
        b[at] ^= x;
        expect(() => decodeSnapshotEntry(b, e.slot)).toThrow(/damaged/);
      }),
    );
    expect(decodeSnapshotEntry(encodeSnapshotEntry(null), 3)).toBeNull();
  });
});

describe('image stream records', () => {
  it('DATA, PLANE, DEALLOC and TRAILER payloads round-trip', () => {
    fc.assert(
      fc.property(fc.array(u53, { maxLength: 8 }), fc.array(fc.tuple(u53, u53), { maxLength: 8 }), (vbns, ranges) => {
        const bs = 16;
        const blocks = Buffer.from(Array.from({ length: vbns.length * bs }, (_, i) => (i * 7) & 255));
        const d = S.decodeData(S.encodeData(vbns, blocks, bs), bs);
        expect(d.vbns).toEqual(vbns);
        expect(d.data.equals(blocks)).toBe(true);
        const p = S.decodePlane(S.encodePlane(3, vbns.map((v) => v % 1000), vbns.map((_, i) => blocks.subarray(i * bs, (i + 1) * bs)), bs), bs);
        expect(p.snapshotIndex).toBe(3);
        expect(p.chunks).toEqual(vbns.map((v) => v % 1000));
        expect(p.data.equals(blocks)).toBe(true);
        expect(S.decodeDealloc(S.encodeDealloc(ranges as Array<[number, number]>))).toEqual(ranges);
        const t = { records: vbns.length, dataBlocks: 5, dataBytes: 80, planeRecords: 2, streamBytes: 1234, sha256: 'ab'.repeat(32), mapDeltaNodes: vbns.length };
        expect(S.decodeTrailer(S.encodeTrailer(t))).toEqual(t);
      }),
    );
  });

  it('MAPDELTA payloads round-trip and apply; damaged ones are refused', () => {
    const bs = 64; // 8 entries per map block
    const delta = fc.record({ vbn: u53, base: u53, entries: fc.uniqueArray(fc.nat(7), { maxLength: 8 }) });
    fc.assert(
      fc.property(fc.array(delta, { maxLength: 6 }), fc.array(u53, { minLength: 8, maxLength: 8 }), (ds, values) => {
        const nodes = ds.map((d) => ({ vbn: d.vbn, base: d.base, slots: d.entries, values: d.entries.map((e) => values[e]) }));
        const enc = S.encodeMapDeltas(nodes);
        expect(S.decodeMapDeltas(enc, bs)).toEqual(nodes);
        for (const n of nodes) {
          const block = Buffer.alloc(bs, 0xee);
          S.applyMapDelta(block, n);
          for (let e = 0; e < 8; e++) {
            const want = n.slots.includes(e) ? BigInt(values[e]) : 0xeeeeeeeeeeeeeeeen;
            expect(block.readBigUInt64LE(e * 8)).toBe(want);
          }
        }
        // cut anywhere inside, or one byte too many: refused
        if (enc.length > 8) expect(() => S.decodeMapDeltas(enc.subarray(0, enc.length - 1), bs)).toThrow(/MAPDELTA/);
        expect(() => S.decodeMapDeltas(Buffer.concat([enc, Buffer.alloc(1)]), bs)).toThrow(/MAPDELTA/);
      }),
    );
    // an entry index beyond the block
    const bad = S.encodeMapDeltas([{ vbn: 5, base: 4, slots: [8], values: [1] }]);
    expect(() => S.decodeMapDeltas(bad, bs)).toThrow(/MAPDELTA/);
    expect(S.decodePreamble(S.encodePreamble(S.FEATURE_MAPDELTA | S.FEATURE_ZSTD)).features).toBe(3);
  });

  it('refuses unknown required features, other versions, bad magic and bad frames', () => {
    expect(() => S.decodePreamble(S.encodePreamble(0x80))).toThrow(/features 0x80, which this imgstream does not have/);
    expect(() => S.decodePreamble(S.encodePreamble(0x80))).toThrow(NewerFeatureError); // exit 5, not corrupt
    const pre = S.encodePreamble(0);
    pre.writeUInt16LE(2, 8);
    expect(() => S.decodePreamble(pre)).toThrow(/version 2/);
    expect(() => S.decodePreamble(Buffer.from('NOTASTREAMATALL!'))).toThrow(/magic/);
    const f = S.encodeFrame(S.RecordType.Data, 0, Buffer.alloc(10), 10);
    f.writeUInt32LE(S.MAX_PAYLOAD + 1, 4);
    expect(() => S.decodeFrame(f)).toThrow(/length/);
    const g = S.encodeFrame(S.RecordType.Data, 0x80, Buffer.alloc(10), 10);
    expect(() => S.decodeFrame(g)).toThrow(/damaged/);
    expect(() => S.decodeData(Buffer.alloc(7), 16)).toThrow(/DATA/);
  });
});

const header = (bs: number): S.StreamHeader => ({
  format: 'imgstream-stream',
  version: 1,
  streamId: '00000000-0000-4000-8000-000000000000',
  volume: { uuid: 'ab'.repeat(16), blockSize: bs, nblocks: 1000, logicalSize: bs * 500, maxSnapshots: 8, mapDepth: 2 },
  level: 0,
  expression: 's1',
  base: null,
  top: { id: 1, name: 's1', generation: 3 },
  snapshots: [{ id: 1, name: 's1', shadow: false, master: false, createdMs: 0, mapRoot: 5, generation: 3, blocks: 10, mappedBlocks: 8 }],
  created: '2026-11-23T00:00:00.000Z',
  host: 'test',
  order: 'vbn',
  compression: { codec: 'zstd', level: 1 },
  image: { blocks: 6, bytes: 6 * bs, extents: 1 },
});

async function makeStream(compress: boolean, unknownOptional = false): Promise<Buffer> {
  const bs = 4096;
  const media = new MemoryMedium();
  const h = header(bs);
  if (!compress) h.compression = { codec: 'none' };
  const w = new ImageStreamWriter(media.target(), { compression: h.compression, threads: 0 });
  await w.start(h);
  await w.plane(S.encodePlane(0, [0], [Buffer.alloc(bs, 0x0f)], bs));
  const blocks = Buffer.alloc(6 * bs);
  for (let i = 0; i < blocks.length; i++) blocks[i] = (i * 31 + (i >> 12)) & 255;
  await w.data(S.encodeData([10, 11, 12], blocks.subarray(0, 3 * bs), bs), 3, 3 * bs);
  if (unknownOptional) await w.dealloc(S.encodeDealloc([[1, 2]]));
  await w.data(S.encodeData([20, 21, 22], blocks.subarray(3 * bs), bs), 3, 3 * bs);
  await w.finish();
  return media.streams[0];
}

async function readAll(b: Buffer): Promise<StreamRecord[]> {
  const out: StreamRecord[] = [];
  async function* src() {
    for (let o = 0; o < b.length; o += 1000) yield b.subarray(o, o + 1000);
  }
  for await (const r of readImageStream(src(), 'test')) out.push(r);
  return out;
}

/** The trailer's SHA-256 chain of a stream body: preamble, header record, then every later frame. */
function chainOf(body: Buffer): string {
  const h = createHash('sha256');
  h.update(body.subarray(0, S.PREAMBLE_BYTES));
  let o = S.PREAMBLE_BYTES;
  let first = true;
  while (o < body.length) {
    const len = body.readUInt32LE(o + 4);
    h.update(body.subarray(o, o + S.FRAME_BYTES));
    if (first) h.update(body.subarray(o + S.FRAME_BYTES, o + S.FRAME_BYTES + len));
    first = false;
    o += S.FRAME_BYTES + len;
  }
  return h.digest('hex');
}

describe('stream writer and reader', () => {
  for (const compress of [true, false]) {
    it(`round-trip (${compress ? 'zstd' : 'none'}); every flipped byte and every truncation is detected`, async () => {
      const b = await makeStream(compress, true);
      const recs = await readAll(b);
      expect(recs.map((r) => r.type)).toEqual(['header', 'plane', 'data', 'dealloc', 'data', 'trailer']);
      const data = recs.filter((r): r is Extract<StreamRecord, { type: 'data' }> => r.type === 'data');
      expect(data.flatMap((d) => d.vbns)).toEqual([10, 11, 12, 20, 21, 22]);
      const step = Math.max(1, Math.floor(b.length / 200));
      for (let at = 0; at < b.length; at += step) {
        const bad = Buffer.from(b);
        bad[at] ^= 0x5a;
        // the preamble's version and feature bits (bytes 8-15) read as a newer writer's, and a
        // damaged magic (bytes 0-7) as no stream at all: both exit 5
        const newer = at < 16;
        await expect(readAll(bad), `flip at ${at}`).rejects.toMatchObject({ code: newer ? 'not-a-volume' : 'corrupt' });
        await expect(readAll(b.subarray(0, at)), `cut at ${at}`).rejects.toMatchObject({ code: 'corrupt' });
      }
      await expect(readAll(Buffer.concat([b, Buffer.from([0])]))).rejects.toThrow(/after the trailer/);
      await expect(readAll(b.subarray(0, b.length - 112))).rejects.toThrow(/incomplete/);
    });
  }

  it('puts the blocks of every uncompressed DATA record at a multiple of 4096 in the stream, with optional PAD records of zeros', async () => {
    for (const compress of [false, true]) {
      const b = await makeStream(compress, true);
      const frames: Array<{ type: number; flags: number; at: number; length: number }> = [];
      for (let o = S.PREAMBLE_BYTES; o < b.length; ) {
        const f = S.decodeFrame(b.subarray(o, o + S.FRAME_BYTES));
        frames.push({ type: f.type, flags: f.flags, at: o, length: f.storedLength });
        o += S.FRAME_BYTES + f.storedLength;
      }
      const data = frames.filter((f) => f.type === S.RecordType.Data);
      const pads = frames.filter((f) => f.type === S.RecordType.Pad);
      expect(data.length).toBe(2);
      for (const f of data) {
        if (f.flags & S.FLAG_ZSTD) continue; // compressed: nothing to align
        const n = b.readUInt32LE(f.at + S.FRAME_BYTES);
        expect((f.at + S.FRAME_BYTES + 8 + 8 * n) % S.DATA_ALIGN, `DATA at ${f.at}`).toBe(0);
      }
      if (compress) expect(pads).toEqual([]); // these blocks compress: no record is stored raw
      else expect(pads.length).toBe(2); // after the plane and after the dealloc
      for (const p of pads) {
        expect(p.flags).toBe(S.FLAG_OPTIONAL); // a reader that does not know PAD skips it
        expect(b.subarray(p.at + S.FRAME_BYTES, p.at + S.FRAME_BYTES + p.length).every((x) => x === 0)).toBe(true);
      }
      // the trailer counts them as records, and readers pass over them
      const t = S.decodeTrailer(b.subarray(b.length - S.TRAILER_BYTES));
      expect(t.records).toBe(frames.length - 1);
      expect((await readAll(b)).map((r) => r.type)).toEqual(['header', 'plane', 'data', 'dealloc', 'data', 'trailer']);
    }
  });

  it('padLength aligns the next DATA record\'s blocks from any offset (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 2 ** 40 }), fc.integer({ min: 1, max: 4096 }), (at, n) => {
        const dataOffset = 8 + 8 * n;
        const pad = S.padLength(at, dataOffset);
        if (pad === null) return (at + S.FRAME_BYTES + dataOffset) % S.DATA_ALIGN === 0;
        return pad >= 0 && pad < S.DATA_ALIGN && (at + 2 * S.FRAME_BYTES + pad + dataOffset) % S.DATA_ALIGN === 0;
      }),
    );
  });

  it('skips an unknown optional record and refuses an unknown required one', async () => {
    const b = await makeStream(false);
    // splice a record of type 9 after the header: optional is skipped, required refused
    const recs = await readAll(b);
    expect(recs[0].type).toBe('header');
    const headerLen = S.FRAME_BYTES + b.readUInt32LE(S.PREAMBLE_BYTES + 4);
    const cut = S.PREAMBLE_BYTES + headerLen;
    for (const [flags, ok] of [[S.FLAG_OPTIONAL, true], [0, false]] as const) {
      const payload = Buffer.from('future');
      const rec = Buffer.concat([S.encodeFrame(9 as S.RecordType, flags, payload, payload.length), payload]);
      const spliced = Buffer.concat([b.subarray(0, cut), rec, b.subarray(cut)]);
      // the trailer's checksum and counts no longer match, so rewrite them as a writer would
      const body = spliced.subarray(0, spliced.length - S.FRAME_BYTES - S.TRAILER_BYTES);
      const t = S.decodeTrailer(b.subarray(b.length - S.TRAILER_BYTES));
      const trailer = S.encodeTrailer({ ...t, records: t.records + 1, streamBytes: body.length, sha256: chainOf(body) });
      const fixed = Buffer.concat([body, S.encodeFrame(S.RecordType.Trailer, 0, trailer, trailer.length), trailer]);
      if (ok) expect((await readAll(fixed)).map((r) => r.type)).toEqual(['header', 'plane', 'data', 'data', 'trailer']);
      else await expect(readAll(fixed)).rejects.toThrow(/unknown required type 9/);
    }
  });
});
