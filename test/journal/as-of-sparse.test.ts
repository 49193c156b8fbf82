// Export, restore and scrub of a protection destination pass over what the base leaves
// unmapped without reading it (its checksums in base.sums are compared with a zero
// block's instead), chunk by chunk (8 MiB). On a disk of several chunks: some mapped in
// the base, some written only by intervals (zeros among them), one zeroed over base data,
// some empty. The disk as of the newest point is exact from export and restore alike; a
// damaged checksum in an empty chunk is still found (exit 9, and by the scrub), and one
// in a chunk an interval writes over is not read at all.
import fs from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalProtectDestination } from '../../src/journal/destination.js';
import type { IntervalBlock } from '../../src/journal/destination-api.js';
import { inProcess, inProcessOk } from '../support/in-process.js';
import { cli } from '../nbd/support.js';
import { tempDir } from '../support/images.js';

const BS = 4096;
const CHUNK = 2048; // blocks per 8 MiB chunk
const BLOCKS = 8 * CHUNK;
const T0 = Date.UTC(2026, 11, 6, 9, 0, 0);
const root = tempDir('imgstream-as-of-sparse-');
const locks = `${root}/locks`;
const env = { IMGSTREAM_LOCK_DIR: locks };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function* iterate(blocks: IntervalBlock[]): AsyncGenerator<IntervalBlock> {
  for (const b of blocks) yield b;
}

function blockOf(lbn: number, v: number): Buffer {
  const b = Buffer.alloc(BS, (lbn * 7 + v) % 251 || 1);
  b.writeUInt32LE(lbn, 0);
  b.writeUInt32LE(v, 4);
  return b;
}

/** Seeds `dir` and appends intervals; returns the disk as of the last one. */
async function build(dir: string): Promise<Buffer> {
  const model = Buffer.alloc(BLOCKS * BS);
  const put = (lbn: number, data: Buffer | null) => (data ? data.copy(model, lbn * BS) : model.fill(0, lbn * BS, (lbn + 1) * BS));
  const d = new LocalProtectDestination(dir);
  await d.open({ uuid: 'e'.repeat(32), path: 'sparse.vol', blockSize: BS, logicalSize: BLOCKS * BS }, 24 * 3600_000);
  // the base: chunk 0 and the middle of chunk 5
  const seed = [...Array.from({ length: 300 }, (_, i) => i), ...Array.from({ length: 40 }, (_, i) => 5 * CHUNK + 1000 + i)].map((lbn) => ({ lbn, data: blockOf(lbn, 0) }));
  for (const b of seed) put(b.lbn, b.data);
  await d.seed({ journalTo: 0, time: T0, blockCount: seed.length, blocks: iterate(seed) });
  const intervals: IntervalBlock[][] = [
    // chunk 2, empty in the base: data, and a zero block
    [...Array.from({ length: 10 }, (_, i) => ({ lbn: 2 * CHUNK + 5 + i * 3, data: blockOf(2 * CHUNK + 5 + i * 3, 1) })), { lbn: 2 * CHUNK + 100, data: null }],
    // zeros over base data in chunk 5, data at the very end of the disk
    [...Array.from({ length: 40 }, (_, i) => ({ lbn: 5 * CHUNK + 1000 + i, data: null })), { lbn: BLOCKS - 1, data: blockOf(BLOCKS - 1, 2) }],
  ];
  for (const [k, blocks] of intervals.entries()) {
    for (const b of blocks) put(b.lbn, b.data);
    await d.append({ seq: k + 1, start: T0 + k * 1000, end: T0 + (k + 1) * 1000, journalFrom: k, journalTo: k + 1, kind: 'journal', snapshots: [], blockCount: blocks.length, blocks: iterate(blocks) });
  }
  await d.close();
  return model;
}

/** Sets base.sums' entry for `lbn` to a wrong value. */
function damageSum(dir: string, lbn: number): void {
  const fd = fs.openSync(`${dir}/base.sums`, 'r+');
  fs.writeSync(fd, Buffer.from([1, 2, 3, 4]), 0, 4, 32 + lbn * 4);
  fs.closeSync(fd);
}

describe('as of a point, over a base that leaves most of the disk unmapped', () => {
  it('is exact from export and restore, and the scrub checks every block', async () => {
    const dest = `${root}/a.cdp`;
    const model = await build(dest);
    await inProcessOk(['volume', 'export', dest, '--as-of', 'latest', '--to', `${root}/a.raw`], { env });
    expect(fs.readFileSync(`${root}/a.raw`).equals(model)).toBe(true);
    await cli(['restore', '--to', `${root}/a.vol`, '--as-of', 'latest', '--from', dest], locks);
    await inProcessOk(['volume', 'export', `${root}/a.vol`, '--to', `${root}/b.raw`], { env });
    expect(fs.readFileSync(`${root}/b.raw`).equals(model)).toBe(true);
    await inProcessOk(['volume', 'check', `${root}/a.vol`], { env });
    const v = JSON.parse((await inProcessOk(['protect', 'status', dest, '--verify', '--json'], { env })).stdout) as { verified: { base: { ok: boolean; dataBlocks: number; badBlocks: number[] } } };
    expect(v.verified.base).toMatchObject({ ok: true, dataBlocks: BLOCKS, badBlocks: [] });
  });

  it('finds a damaged checksum in an empty chunk, and does not read one an interval writes over', async () => {
    const dest = `${root}/b.cdp`;
    const model = await build(dest);
    damageSum(dest, 2 * CHUNK + 5); // written by interval 1: the base's block is never read
    await inProcessOk(['volume', 'export', dest, '--as-of', 'latest', '--to', `${root}/c.raw`], { env });
    expect(fs.readFileSync(`${root}/c.raw`).equals(model)).toBe(true);
    damageSum(dest, 6 * CHUNK + 77); // an empty chunk
    const r = await inProcess(['volume', 'export', dest, '--as-of', 'latest', '--to', `${root}/d.raw`], { env });
    expect(r.code).toBe(9);
    expect(r.stderr).toMatch(new RegExp(`block ${6 * CHUNK + 77} fails its checksum`));
    expect(fs.existsSync(`${root}/d.raw`)).toBe(false);
    const v = await inProcess(['protect', 'status', dest, '--verify', '--json'], { env });
    expect(v.code).toBe(9);
    // the scrub checks the base itself, blocks laid over by intervals included
    expect((JSON.parse(v.stdout) as { error: { details: { verified: { base: { badBlocks: number[] } } } } }).error.details.verified.base.badBlocks).toEqual([2 * CHUNK + 5, 6 * CHUNK + 77]);
  });
});
