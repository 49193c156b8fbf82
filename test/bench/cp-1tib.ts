// cp-1tib: one consistency point after one changed block on the 1 TiB volume, in-process:
// open, writeLogical one block, time only commit(), close. The target is a limit (50 ms),
// not a ratio; the ratio against a 4 KiB write + fdatasync to a new block of a file in
// the same directory is context (a CP is several ordered flushes).
import fs from 'node:fs';
import path from 'node:path';
import { Volume } from '../../src/volume/index.js';
import { syncAll } from './cache-state.js';
import type { BenchContext } from './context.js';
import { median, seconds } from './measure.js';
import { row, type BenchRow } from './result.js';
import { BIG_LOGICAL_BYTES, bigVolume } from './big-volume.js';
import { Xorshift128 } from './xorshift.js';

const REPEATS = 5;

export async function benchCp1TiB(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const big = await bigVolume(ctx);
  const bs = big.layout.blockSize;
  const rng = new Xorshift128(7);
  const probe = path.join(ctx.work, 'fdatasync.probe');
  const block = Buffer.alloc(bs);
  const words = new Uint32Array(block.buffer, block.byteOffset, bs / 4);
  const fdsync: number[] = [];
  const cp: number[] = [];
  const written: Array<[number, Buffer]> = [];
  const pfd = fs.openSync(probe, 'w');
  try {
    for (let k = 0; k < REPEATS; k++) {
      rng.fill(words);
      syncAll();
      // a new block of the file each time: an allocating write, like the CP's
      fdsync.push(seconds(() => {
        fs.writeSync(pfd, block, 0, bs, k * bs);
        fs.fdatasyncSync(pfd);
      }));

      rng.fill(words);
      const lbn = rng.below(BIG_LOGICAL_BYTES / bs);
      syncAll();
      const vol = Volume.open(big.path, { write: true });
      try {
        vol.writeLogical(lbn, block);
        cp.push(seconds(() => vol.commit()));
      } finally {
        vol.close();
      }
      written.push([lbn, Buffer.from(block)]);
      ctx.log(`cp-1tib ${k + 1}/${REPEATS}: commit ${(cp[k] * 1000).toFixed(2)} ms, 4 KiB write + fdatasync ${(fdsync[k] * 1000).toFixed(2)} ms`);
    }
  } finally {
    fs.closeSync(pfd);
    fs.rmSync(probe, { force: true });
  }
  // the CPs must have committed what they were given
  const vol = Volume.open(big.path, { write: false });
  try {
    const got = Buffer.alloc(bs);
    for (const [lbn, data] of written) {
      const vbn = vol.map.lookup(lbn);
      if (vbn === 0) throw new Error(`LBN ${lbn} is unmapped after its CP`);
      vol.readBlock(vbn, got);
      if (!got.equals(data)) throw new Error(`LBN ${lbn} reads back different data after its CP`);
    }
  } finally {
    vol.close();
  }
  const toMs = (xs: number[]) => xs.map((s) => s * 1000);
  record(row('cp-1tib', `commit() of one changed block on the 1 TiB volume (in-process, open/write/close untimed) vs a 4 KiB write + fdatasync in the same directory; median of ${REPEATS}`, 'ms', { measured: toMs(cp), baseline: toMs(fdsync) }, median(cp) * 1000, median(fdsync) * 1000, { on: 'measured', op: '<', value: 50 }));
}

