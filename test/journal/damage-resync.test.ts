// Damage at a protection destination followed by a full resync (every block of the disk,
// as after a journal moved aside): the recovery points from the resync on need nothing
// older, so they restore exactly, and --verify says which points are lost and which are
// not, instead of "from this interval on".
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { LocalProtectDestination } from '../../src/journal/destination.js';
import type { IntervalBlock, ShippedInterval } from '../../src/journal/destination-api.js';
import { exportProtectedAsOf } from '../../src/journal/restore-as-of.js';
import { readState } from '../../src/journal/destination-state.js';
import { fileSink } from '../../src/volume/image-io.js';
import { runCli, stderrLines } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { endOf, MODEL_BLOCK_SIZE, MODEL_BLOCKS, modelImages, modelSource, seedImage, shippedInterval } from '../support/protect-model.js';

const root = tempDir('imgstream-damage-resync-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
process.env.IMGSTREAM_LOCK_DIR = env.IMGSTREAM_LOCK_DIR;
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const iso = (ms: number) => new Date(ms).toISOString();
const ivl = (dest: string, seq: number) => path.join(dest, 'intervals', `${String(seq).padStart(10, '0')}.ivl`);

async function* iterate(blocks: IntervalBlock[]): AsyncGenerator<IntervalBlock> {
  for (const b of blocks) yield b;
}

/** Interval `seq` as a full resync: every block of `img` (zero blocks as zeros). */
function fullResync(seed: number, seq: number, img: Buffer): ShippedInterval {
  const blocks: IntervalBlock[] = [];
  for (let lbn = 0; lbn < MODEL_BLOCKS; lbn++) {
    const data = img.subarray(lbn * MODEL_BLOCK_SIZE, (lbn + 1) * MODEL_BLOCK_SIZE);
    blocks.push({ lbn, data: data.some((b) => b !== 0) ? Buffer.from(data) : null });
  }
  return { ...shippedInterval(seed, seq), kind: 'resync', blockCount: blocks.length, blocks: iterate(blocks) };
}

/** A destination of the model's seed and intervals 1-4 as journaled, 5 a full resync holding the disk as the model has it at 5, 6-8 journaled again (nothing folded). */
async function withResyncAt5(dest: string, seed: number, images: Buffer[]): Promise<void> {
  const d = new LocalProtectDestination(dest);
  await d.open(modelSource(seed), 3_600_000 * 24 * 365 * 10);
  await d.seed(seedImage(seed));
  for (let seq = 1; seq <= 4; seq++) await d.append(shippedInterval(seed, seq));
  await d.append(fullResync(seed, 5, images[5]));
  for (let seq = 6; seq <= 8; seq++) await d.append(shippedInterval(seed, seq));
  await d.close();
}

async function exportAsOf(dest: string, asOf: string): Promise<Buffer> {
  const out = path.join(root, `out-${process.hrtime.bigint()}.raw`);
  await exportProtectedAsOf(dest, asOf, (size) => fileSink(out, { force: false, size }));
  const img = fs.readFileSync(out);
  fs.rmSync(out);
  return img;
}

describe('damage before a full resync', () => {
  it('restores the points from the resync on exactly, and --verify names only the points lost', async () => {
    const seed = 41;
    const images = modelImages(seed, 8);
    const dest = path.join(root, 'dest.cdp');
    await withResyncAt5(dest, seed, images);

    // interval 3's index is damaged: points 3 and 4 are lost, not those from the resync on
    fs.truncateSync(ivl(dest, 3), fs.statSync(ivl(dest, 3)).size - 10);
    for (const seq of [5, 6, 8]) expect((await exportAsOf(dest, iso(endOf(seed, seq)))).equals(images[seq]), `point ${seq}`).toBe(true);
    expect((await exportAsOf(dest, iso(endOf(seed, 2)))).equals(images[2])).toBe(true);
    await expect(exportAsOf(dest, iso(endOf(seed, 4)))).rejects.toMatchObject({ code: 'corrupt', message: expect.stringContaining(`${ivl(dest, 3)}: damaged interval file`) });

    const r = runCli(['protect', 'status', dest, '--verify'], { env, timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(9);
    expect(stderrLines(r)).toEqual([expect.stringContaining(`the recovery points after ${iso(endOf(seed, 2))} and before ${iso(endOf(seed, 5))} cannot be rebuilt; every other one can`)]);
    const json = runCli(['protect', 'status', dest, '--verify', '--json'], { env, timeoutMs: 30_000 });
    const v = JSON.parse(json.stdout).error.details.verified;
    expect(v).toMatchObject({ firstDamagedSeq: 3, rebuildableTo: iso(endOf(seed, 8)), lost: [{ after: iso(endOf(seed, 2)), before: iso(endOf(seed, 5)) }] });

    // damage after the resync too: the points after its last good one are lost to the end
    fs.truncateSync(ivl(dest, 7), 100);
    const both = runCli(['protect', 'status', dest, '--verify', '--json'], { env, timeoutMs: 30_000 });
    expect(JSON.parse(both.stdout).error.details.verified.lost).toEqual([
      { after: iso(endOf(seed, 2)), before: iso(endOf(seed, 5)) },
      { after: iso(endOf(seed, 6)), before: null },
    ]);
    expect((await exportAsOf(dest, iso(endOf(seed, 6)))).equals(images[6])).toBe(true);
  });

  it('a fold that meets a damaged interval holds before it, asks for a full resync, and passes over it once one came', async () => {
    const seed = 43;
    const images = modelImages(seed, 8);
    const dest = path.join(root, 'fold.cdp');
    const d = new LocalProtectDestination(dest);
    await d.open(modelSource(seed), 3_600_000 * 24 * 365 * 10);
    await d.seed(seedImage(seed));
    for (let seq = 1; seq <= 4; seq++) await d.append(shippedInterval(seed, seq));
    await d.close();
    // bit rot in interval 2's data (its index intact: only reading the data finds it)
    const file = ivl(dest, 2);
    const bytes = fs.readFileSync(file);
    bytes[8 + bytes.readUInt32LE(4) + 10] ^= 0xff; // the first data block, after the header's JSON
    fs.writeFileSync(file, bytes);

    // --keep shortened: retention folds interval 1, holds before 2, and asks for every block
    const again = new LocalProtectDestination(dest);
    const st = await again.open(modelSource(seed), 1000);
    expect(st.damage).toMatchObject({ seq: 2, wholeDiskWanted: true, what: expect.stringContaining('checksum mismatch') });
    expect(readState(dest)).toMatchObject({ baseSeq: 1, fold: null, damage: { seq: 2 } });
    expect((await exportAsOf(dest, iso(endOf(seed, 1)))).equals(images[1]), 'the points before it are kept').toBe(true);
    const status = runCli(['protect', 'status', dest], { env, timeoutMs: 30_000 });
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toContain(`DAMAGED: ${file}: damaged interval file (block `);
    expect(status.stdout).toContain('retention holds before interval 2 (damaged): its recovery points and later ones cannot be rebuilt until a full resync');

    // the full resync the shipper sends, and intervals after it: the fold passes over 2..4
    expect((await again.append(fullResync(seed, 5, images[5]))).damage).toMatchObject({ seq: 2, wholeDiskWanted: false });
    for (let seq = 6; seq <= 8; seq++) await again.append(shippedInterval(seed, seq));
    await again.close();
    const after = readState(dest);
    expect(after.fold).toBeNull();
    expect(after.baseSeq, 'folded past the resync (the newest second is kept)').toBeGreaterThanOrEqual(6);
    expect(after.damage).toBeUndefined();
    expect(fs.existsSync(file)).toBe(false);
    expect((await exportAsOf(dest, iso(endOf(seed, after.baseSeq)))).equals(images[after.baseSeq])).toBe(true);
    expect((await exportAsOf(dest, iso(endOf(seed, 8)))).equals(images[8])).toBe(true);
  });

  it('a fold that passes over one damaged interval and meets another names the second', async () => {
    const seed = 47;
    const images = modelImages(seed, 8);
    const dest = path.join(root, 'second.cdp');
    await withResyncAt5(dest, seed, images);
    for (const seq of [2, 6]) {
      const bytes = fs.readFileSync(ivl(dest, seq));
      bytes[8 + bytes.readUInt32LE(4) + 10] ^= 0xff;
      fs.writeFileSync(ivl(dest, seq), bytes);
    }
    const again = new LocalProtectDestination(dest);
    const st = await again.open(modelSource(seed), 1000);
    await again.close();
    // passed over 2..4 (the resync at 5 holds the whole disk), held before 6
    expect(readState(dest)).toMatchObject({ baseSeq: 5, fold: null, damage: { seq: 6 } });
    expect(st.damage).toMatchObject({ seq: 6, wholeDiskWanted: true });
    expect(fs.existsSync(ivl(dest, 2))).toBe(false);
    expect((await exportAsOf(dest, iso(endOf(seed, 5)))).equals(images[5])).toBe(true);
  });
});
