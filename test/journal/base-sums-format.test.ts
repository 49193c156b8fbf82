// base.sums on disk: "IBS2" files keep a block of zeros as 0 (each entry is its crc32 XOR a
// zero block's), so the entries of what a large disk leaves unmapped are holes: a 1 TiB
// disk holding little took 1 GiB of space in "IBS1" files, which are still read. A file
// written here reads back the checksums written, through a fold's update, and so does the
// same file converted to the older dense form.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BASE_SUMS_FILE, BaseSums, BaseSumsWriter, zeroBlockCrc, zeroMismatches } from '../../src/journal/base-sums.js';
import { crc32 } from '../../src/format/crc32.js';
import type { IntervalIndex } from '../../src/journal/interval-file.js';
import { tempDir } from '../support/images.js';

const root = tempDir('imgstream-base-sums-format-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const BS = 4096;
const BLOCKS = 1 << 22; // 16 GiB of 4 KiB blocks: 16 MiB of entries
const block = (v: number) => Buffer.alloc(BS, v);

function write(dir: string, data: Map<number, number>): void {
  fs.mkdirSync(dir, { recursive: true });
  const w = new BaseSumsWriter(path.join(dir, BASE_SUMS_FILE), BS, BLOCKS);
  for (const [lbn, v] of [...data].sort((a, b) => a[0] - b[0])) w.add(lbn, v === 0 ? null : block(v));
  w.finish();
}

function expectSums(dir: string, data: Map<number, number>): void {
  const sums = BaseSums.open(dir, { write: false, blockSize: BS, logicalBlocks: BLOCKS })!;
  try {
    for (const [lbn, v] of data) expect(sums.read(lbn, 1)[0], `LBN ${lbn}`).toBe(crc32(block(v)));
    expect(zeroMismatches(BS, 1 << 20, sums.read(1 << 20, 1 << 18))).toEqual([]);
    expect(zeroMismatches(BS, 100, sums.read(100, 10))).toEqual([105]);
  } finally {
    sums.close();
  }
}

describe('base.sums', () => {
  const data = new Map<number, number>([[0, 1], [1, 0], [105, 7], [BLOCKS - 1, 9]]);

  it('keeps zero blocks as holes, and reads back what was written, through a fold', () => {
    const dir = path.join(root, 'a');
    write(dir, data);
    const file = path.join(dir, BASE_SUMS_FILE);
    expect(fs.statSync(file).size).toBe(32 + BLOCKS * 4);
    expect(fs.statSync(file).blocks * 512, 'holes where the disk is zeros').toBeLessThan(1 << 20);
    expectSums(dir, data);
    // a fold's update: a block written, a run zeroed over data
    const sums = BaseSums.open(dir, { write: true, blockSize: BS, logicalBlocks: BLOCKS })!;
    const ix = { lbns: Float64Array.from([50, 100]), offsets: Float64Array.from([0, -10]), crcs: Uint32Array.from([crc32(block(3)), 0]) } as unknown as IntervalIndex;
    sums.takeInterval(ix);
    sums.sync();
    sums.close();
    const after = new Map(data);
    after.set(50, 3);
    for (let l = 100; l < 110; l++) after.set(l, 0);
    const s2 = BaseSums.open(dir, { write: false, blockSize: BS, logicalBlocks: BLOCKS })!;
    try {
      for (const [lbn, v] of after) expect(s2.read(lbn, 1)[0], `LBN ${lbn}`).toBe(crc32(block(v)));
    } finally {
      s2.close();
    }
  });

  it('reads a dense "IBS1" file written by an earlier version the same', () => {
    const dir = path.join(root, 'b');
    write(dir, data);
    const file = path.join(dir, BASE_SUMS_FILE);
    // to the older form: magic IBS1 (header checksum again), each entry the crc32 itself
    const raw = fs.readFileSync(file);
    raw.writeUInt32LE(0x3153_4249, 0);
    raw.writeUInt32LE(crc32(raw.subarray(0, 16)), 16);
    const zero = zeroBlockCrc(BS);
    for (let at = 32; at < raw.length; at += 4) raw.writeUInt32LE((raw.readUInt32LE(at) ^ zero) >>> 0, at);
    fs.writeFileSync(file, raw);
    expectSums(dir, data);
  });
});
