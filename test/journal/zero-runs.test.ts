// Runs of zeros from the journal to the interval file: the interval builder keeps a trim
// or write-zeroes as one run (not an entry per block) and cuts it where blocks were
// written after it; the interval file stores a run as one entry ("IPI2" files), reads it
// back, and refuses runs that overlap or a count that does not add up. Checked against a
// model that applies each record block by block.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { IntervalBuilder } from '../../src/journal/interval-builder.js';
import { entryBlocks, readIntervalIndex, writeIntervalFile } from '../../src/journal/interval-file.js';
import { RecordKind } from '../../src/journal/record.js';
import type { LocatedRecord } from '../../src/journal/journal-reader.js';
import type { IntervalBlock, ShippedInterval } from '../../src/journal/destination-api.js';
import { Overlay } from '../../src/journal/overlay.js';

const BS = 512;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-zero-runs-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Op = { zero: boolean; lbn: number; count: number; fill: number };

function recordOf(op: Op, seq: number): LocatedRecord {
  const payload = op.zero ? Buffer.alloc(0) : Buffer.alloc(op.count * BS, op.fill);
  return { kind: op.zero ? RecordKind.Zero : RecordKind.Data, seq, time: 1000 + seq, lbn: op.lbn, count: op.count, payloadBytes: payload.length, payload, segment: 'none', payloadAt: 0 };
}

async function collect(blocks: AsyncIterable<IntervalBlock>): Promise<IntervalBlock[]> {
  const out: IntervalBlock[] = [];
  for await (const b of blocks) out.push({ ...b, data: b.data ? Buffer.from(b.data) : null });
  return out;
}

const ops = fc.array(
  fc.record({ zero: fc.boolean(), lbn: fc.integer({ min: 0, max: 200 }), count: fc.integer({ min: 1, max: 40 }), fill: fc.integer({ min: 1, max: 255 }) }),
  { maxLength: 60 },
);

describe('runs of zeros', () => {
  it('the builder ships the last version of each block, a zeroed stretch as runs cut where written after', async () => {
    await fc.assert(
      fc.asyncProperty(ops, async (list) => {
        const b = new IntervalBuilder(BS, 0);
        const model = new Map<number, number>(); // lbn → fill (0: zeros)
        list.forEach((op, i) => {
          b.add(recordOf(op, i + 1));
          for (let l = op.lbn; l < op.lbn + op.count; l++) model.set(l, op.zero ? 0 : op.fill);
        });
        const iv = b.build(1, 0, 1, []);
        const entries = await collect(iv.blocks);
        b.release();
        expect(iv.entries ?? iv.blockCount).toBe(entries.length);
        expect(iv.blockCount).toBe(model.size);
        const got = new Map<number, number>();
        let next = 0;
        let lastZeroEnd = -1;
        for (const e of entries) {
          const n = e.count ?? 1;
          expect(e.lbn, 'ascending, never overlapping').toBeGreaterThanOrEqual(next);
          if (e.data === null) {
            expect(e.lbn, 'runs that meet are one').not.toBe(lastZeroEnd);
            lastZeroEnd = e.lbn + n;
          } else expect(n).toBe(1);
          for (let l = e.lbn; l < e.lbn + n; l++) got.set(l, e.data === null ? 0 : e.data[0]);
          next = e.lbn + n;
        }
        expect([...got.entries()].sort((x, y) => x[0] - y[0])).toEqual([...model.entries()].sort((x, y) => x[0] - y[0]));
      }),
      { numRuns: 200 },
    );
  });

  it('an interval file keeps a run as one entry, and an overlay over it reads the disk back', async () => {
    const ivDir = path.join(dir, 'intervals');
    fs.mkdirSync(ivDir, { recursive: true });
    const blocks: IntervalBlock[] = [{ lbn: 2, data: Buffer.alloc(BS, 7) }, { lbn: 3, data: null, count: 1_000_000 }, { lbn: 1_000_003, data: Buffer.alloc(BS, 9) }, { lbn: 1_000_004, data: null }];
    const iv = (list: IntervalBlock[], blockCount: number, entries?: number): ShippedInterval => ({
      seq: 1, start: 0, end: 1, journalFrom: 0, journalTo: 1, kind: 'journal', snapshots: [], blockCount, ...(entries === undefined ? {} : { entries }),
      blocks: (async function* () { yield* list; })(),
    });
    const geometry = { blockSize: BS, logicalBlocks: 2_000_000, source: 'x' };
    const bytes = await writeIntervalFile(ivDir, iv(blocks, 1_000_003, 4), geometry);
    expect(bytes).toBeLessThan(4096);
    const file = path.join(ivDir, '0000000001.ivl');
    expect(fs.readFileSync(file).subarray(0, 4).toString('latin1')).toBe('IPI2');
    const ix = readIntervalIndex(file);
    expect([...ix.lbns]).toEqual([2, 3, 1_000_003, 1_000_004]);
    expect([0, 1, 2, 3].map((e) => entryBlocks(ix, e))).toEqual([1, 1_000_000, 1, 1]);
    const o = new Overlay([ix]);
    expect(o.blockCount).toBe(1_000_003);
    const out = Buffer.alloc(BS);
    const fds = o.openFiles();
    o.readAt(2, out, fds);
    fds.forEach((fd) => fs.closeSync(fd));
    expect(out.equals(Buffer.alloc(BS, 9))).toBe(true);
    expect(o.zeroesAll(3, 1_000_003)).toBe(true);

    // refused, leaving nothing: runs that overlap, a run with data, a run past the disk's end, counts that do not add up
    const bad: Array<[IntervalBlock[], number, number | undefined, RegExp]> = [
      [[{ lbn: 3, data: null, count: 10 }, { lbn: 12, data: null }], 11, 2, /out of order/],
      [[{ lbn: 3, data: Buffer.alloc(BS), count: 2 }], 2, 1, /a run of 2 blocks with data/],
      [[{ lbn: 1_999_999, data: null, count: 2 }], 2, 1, /outside the disk/],
      [[{ lbn: 3, data: null, count: 10 }], 11, 1, /10 blocks, but its count says 11/],
      [[{ lbn: 3, data: null, count: 10 }], 10, 2, /1 entries, but its count says 2/],
    ];
    fs.rmSync(file);
    for (const [list, count, entries, message] of bad) {
      await expect(writeIntervalFile(ivDir, iv(list, count, entries), geometry)).rejects.toThrow(message);
      expect(fs.readdirSync(ivDir)).toEqual([]);
    }
    // an interval with no run is written as before ("IPI1": older versions read it)
    await writeIntervalFile(ivDir, iv([{ lbn: 5, data: null }], 1), geometry);
    expect(fs.readFileSync(file).subarray(0, 4).toString('latin1')).toBe('IPI1');
  });
});
