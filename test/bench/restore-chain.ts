// restore-chain: `imgstream restore --from L0 --from L1 --to NEW` of the level-0 and
// level-1 streams of the 4 GiB volume (both --compress none; dump-fixtures.ts) into a
// volume that does not exist yet, + sync, vs `cat L0 L1 > copy` + sync: the same stream
// bytes read and written. Throughput in MB/s of stream bytes, median of 3 each,
// interleaved; target >= 0.7. The first restore is checked block by block: every changed
// block and 20000 others read back through the volume's map must be the image's.
import fs from 'node:fs';
import path from 'node:path';
import { Volume } from '../../src/volume/index.js';
import { parseJsonOutput } from './cli.js';
import type { BenchContext } from './context.js';
import { interleave, median, run, seconds } from './measure.js';
import { measuredCli, memoryRow } from './peak-memory.js';
import { row, type BenchRow } from './result.js';
import { changedVolume4, l0Stream, l1Stream, settleFor } from './dump-fixtures.js';
import type { HalfImage } from './half-image.js';
import { Xorshift128 } from './xorshift.js';

const ROUNDS = 3;
const SAMPLED_BLOCKS = 20_000;

interface RestoreJson {
  created: boolean;
  streams: Array<{ level: number; blocks: number }>;
  blocks: number;
  bytes: number;
}

export async function benchRestoreChain(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const ch = await changedVolume4(ctx);
  const l0 = await l0Stream(ctx);
  const l1 = await l1Stream(ctx);
  const target = path.join(ctx.work, 'restored.vol');
  const copy = path.join(ctx.work, 'restore-chain.copy');
  const streamBytes = l0.result.streamBytes + l1.result.streamBytes;
  const t = { cat: [] as number[], restore: [] as number[] };
  const peaks: Array<number | null> = [];
  for (const [i, step] of interleave(['cat', 'restore'] as const, ROUNDS).entries()) {
    fs.rmSync(target, { force: true });
    fs.rmSync(copy, { force: true });
    await settleFor(ctx, [], [l0.path, l1.path]);
    if (step === 'restore') {
      const m = measuredCli(ctx, ['restore', '--from', l0.path, '--from', l1.path, '--to', target, '--json'], target);
      const r = parseJsonOutput<RestoreJson>(m.stdout);
      const want = [l0.result.blocks, l1.result.blocks];
      if (!r.created || r.streams.length !== 2 || r.streams.some((s, k) => s.blocks !== want[k]) || r.bytes !== (want[0] + want[1]) * 4096) {
        throw new Error(`restore applied ${JSON.stringify(r.streams)} (${r.bytes} bytes), expected streams of ${want.join(' and ')} blocks into a new volume`);
      }
      if (t.restore.length === 0) checkContents(target, ch.image);
      t.restore.push(streamBytes / 1e6 / m.seconds);
      peaks.push(m.peakBytes);
    } else {
      const s = seconds(() => run('sh', ['-c', 'cat "$1" "$2" > "$3" && sync "$3"', 'sh', l0.path, l1.path, copy]));
      if (fs.statSync(copy).size !== streamBytes) throw new Error('cat copied a wrong number of bytes');
      t.cat.push(streamBytes / 1e6 / s);
    }
    ctx.log(`restore-chain ${i + 1}/${2 * ROUNDS}: ${step} ${t[step].at(-1)!.toFixed(0)} MB/s`);
  }
  fs.rmSync(target, { force: true });
  fs.rmSync(copy, { force: true });

  record(row('restore-chain', `imgstream restore of the level-0 + level-1 streams (--compress none, ${(streamBytes / 1e9).toFixed(2)} GB) into a new volume, + sync, vs cat of the same two files to one file, + sync; MB/s of stream bytes, median of ${ROUNDS} each`, 'MB/s', { measured: t.restore, baseline: t.cat }, median(t.restore), median(t.cat), { on: 'ratio', op: '>=', value: 0.7 }));
  // planes: active, two mark-on-allocate, the two snapshots brought, and the bitmap of incoming VBNs (bounded like a plane)
  record(await memoryRow(ctx, 'restore-chain-rss', 'restore processes above', peaks, 6, ch.vol.planeBytes));
}

/** Every changed block and a sample of the others, read through the restored volume's map, must be the changed image's. */
function checkContents(file: string, image: HalfImage): void {
  const vol = Volume.open(file, { write: false });
  try {
    const rng = new Xorshift128(99);
    const lbns = [...image.changes!.blocks, ...Array.from({ length: SAMPLED_BLOCKS }, () => rng.below(image.blocks))];
    const buf = Buffer.alloc(vol.blockSize);
    const scratch = new Uint32Array(vol.blockSize / 4);
    for (const lbn of lbns) {
      const vbn = vol.map.lookup(lbn);
      if (vbn === 0) {
        if (!image.isZero(lbn)) throw new Error(`restored volume: LBN ${lbn} is unmapped, the image has data there`);
        continue;
      }
      vol.readBlock(vbn, buf);
      if (!image.matches(lbn, buf, scratch)) throw new Error(`restored volume: LBN ${lbn} differs from the image`);
    }
  } finally {
    vol.close();
  }
}
