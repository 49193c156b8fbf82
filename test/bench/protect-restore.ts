// protect-restore: `imgstream restore --to NEW --as-of END --from DEST` of a protection
// destination holding 10 minutes of 1 s intervals (600 intervals, 64 random 4 KiB writes
// each, 38 400 writes on a 256 MiB disk), when the writes hit a hot set of 1024 blocks
// (1024 distinct blocks changed since the base) vs when every write is a new block
// (38 400 distinct): the same number of writes and intervals, so the ratio shows what a
// restore's cost follows. Target: the hot restore costs at most half the distinct one
// (what is left is fixed: the process, the index of each interval, the base's copy).
// Median of 3 each, interleaved. Each restore is checked against the image its
// intervals make.
import fs from 'node:fs';
import path from 'node:path';
import { LocalProtectDestination } from '../../src/journal/destination.js';
import type { IntervalBlock } from '../../src/journal/destination-api.js';
import { cliCommand } from './cli.js';
import type { BenchContext } from './context.js';
import { interleave, median, run, seconds } from './measure.js';
import { row, type BenchRow } from './result.js';
import { Xorshift128 } from './xorshift.js';

const BS = 4096;
const BLOCKS = 65_536;
const INTERVALS = 600;
const WRITES = 64;
const HOT = 1024;
const ROUNDS = 3;
const T0 = Date.UTC(2026, 11, 3, 9, 0, 0);

async function* iterate(blocks: IntervalBlock[]): AsyncGenerator<IntervalBlock> {
  for (const b of blocks) yield b;
}

/** Builds the destination; returns the image its newest recovery point holds (the disk, with every written block's first byte tagged). */
async function build(dir: string, hot: boolean): Promise<Map<number, number>> {
  const d = new LocalProtectDestination(dir);
  await d.open({ uuid: (hot ? 'a' : 'b').repeat(32), path: `bench-${hot ? 'hot' : 'distinct'}.vol`, blockSize: BS, logicalSize: BS * BLOCKS }, 24 * 3600_000);
  await d.seed({ journalTo: 0, time: T0, blockCount: 0, blocks: iterate([]) });
  const rng = new Xorshift128(hot ? 5 : 6);
  const last = new Map<number, number>();
  let next = 0;
  for (let seq = 1; seq <= INTERVALS; seq++) {
    const lbns = new Set<number>();
    while (lbns.size < WRITES) lbns.add(hot ? rng.below(HOT) : next++);
    const blocks = [...lbns].sort((a, b) => a - b).map((lbn) => {
      const data = Buffer.alloc(BS, seq % 251);
      data.writeUInt32LE(seq, 0);
      last.set(lbn, seq);
      return { lbn, data };
    });
    await d.append({ seq, start: T0 + (seq - 1) * 1000, end: T0 + seq * 1000, journalFrom: seq - 1, journalTo: seq, kind: 'journal', snapshots: [], blockCount: WRITES, blocks: iterate(blocks) });
  }
  await d.close();
  return last;
}

function check(raw: string, last: Map<number, number>): void {
  const img = fs.readFileSync(raw);
  for (const [lbn, seq] of last) if (img.readUInt32LE(lbn * BS) !== seq) throw new Error(`restored disk: block ${lbn} is not the version of interval ${seq}`);
}

export async function benchProtectRestore(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const dests = { hot: path.join(ctx.work, 'protect-hot.cdp'), distinct: path.join(ctx.work, 'protect-distinct.cdp') };
  const models = { hot: await build(dests.hot, true), distinct: await build(dests.distinct, false) };
  ctx.log(`protect-restore: destinations built (${INTERVALS} intervals each)`);
  const asOf = new Date(T0 + INTERVALS * 1000).toISOString();
  const t = { hot: [] as number[], distinct: [] as number[] };
  for (const [i, kind] of interleave(['hot', 'distinct'] as const, ROUNDS).entries()) {
    const vol = path.join(ctx.work, `protect-${kind}.vol`);
    fs.rmSync(vol, { force: true });
    const [cmd, argv] = cliCommand(['restore', '--to', vol, '--as-of', asOf, '--from', dests[kind], '--quiet']);
    t[kind].push(seconds(() => run(cmd, argv)));
    if (t[kind].length === 1) {
      const raw = path.join(ctx.work, `protect-${kind}.raw`);
      const [c2, a2] = cliCommand(['volume', 'export', vol, '--to', raw, '--force', '--quiet']);
      run(c2, a2);
      check(raw, models[kind]);
      fs.rmSync(raw, { force: true });
    }
    fs.rmSync(vol, { force: true });
    ctx.log(`protect-restore ${i + 1}/${2 * ROUNDS}: ${kind} ${t[kind].at(-1)!.toFixed(2)} s`);
  }
  for (const d of Object.values(dests)) fs.rmSync(d, { recursive: true, force: true });
  record(row('protect-restore', `restore --as-of from a protection destination of ${INTERVALS} intervals x ${WRITES} writes (4 KiB, 256 MiB disk): writes to ${HOT} hot blocks vs to ${INTERVALS * WRITES} distinct blocks; seconds, median of ${ROUNDS} each`, 's', { measured: t.hot, baseline: t.distinct }, median(t.hot), median(t.distinct), { on: 'ratio', op: '<=', value: 0.5 }));
}
