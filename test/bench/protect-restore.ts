// protect-restore: `imgstream restore --to NEW --as-of TIME --from DEST` of a protection
// destination holding 10 minutes of 1 s intervals (600 intervals, 64 random 4 KiB writes
// each, 256 MiB disk). With the writes on a hot set of 1024 blocks, a restore as of the
// last interval (38 400 writes since the base, 1024 distinct blocks) against one as of the
// first (64 writes): the cost must not follow the number of writes (target: at most 2x
// for 600x the writes). Then, as information, the same 38 400 writes to as many distinct
// blocks against the hot restore: what the cost does follow. Median of 3 each,
// interleaved; each restore is checked against the image its intervals make.
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

/** Builds the destination; returns, for each interval seq, the version of each block written by then (seq → lbn → seq written). */
async function build(dir: string, hot: boolean): Promise<Array<Map<number, number>>> {
  const d = new LocalProtectDestination(dir);
  await d.open({ uuid: (hot ? 'a' : 'b').repeat(32), path: `bench-${hot ? 'hot' : 'distinct'}.vol`, blockSize: BS, logicalSize: BS * BLOCKS }, 24 * 3600_000);
  await d.seed({ journalTo: 0, time: T0, blockCount: 0, blocks: iterate([]) });
  const rng = new Xorshift128(hot ? 5 : 6);
  const last = new Map<number, number>();
  const at: Array<Map<number, number>> = [new Map()];
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
    if (seq === 1 || seq === INTERVALS) at[seq] = new Map(last);
  }
  await d.close();
  return at;
}

function check(raw: string, last: Map<number, number> | undefined): void {
  if (!last) throw new Error('no model for this point');
  const img = fs.readFileSync(raw);
  for (const [lbn, seq] of last) if (img.readUInt32LE(lbn * BS) !== seq) throw new Error(`restored disk: block ${lbn} is not the version of interval ${seq}`);
}

export async function benchProtectRestore(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const dirs = { hot: path.join(ctx.work, 'protect-hot.cdp'), distinct: path.join(ctx.work, 'protect-distinct.cdp') };
  const models = { hot: await build(dirs.hot, true), distinct: await build(dirs.distinct, false) };
  ctx.log(`protect-restore: destinations built (${INTERVALS} intervals each)`);
  const cases = {
    first: { dir: dirs.hot, seq: 1, model: models.hot[1] },
    hot: { dir: dirs.hot, seq: INTERVALS, model: models.hot[INTERVALS] },
    distinct: { dir: dirs.distinct, seq: INTERVALS, model: models.distinct[INTERVALS] },
  };
  const t = { first: [] as number[], hot: [] as number[], distinct: [] as number[] };
  for (const [i, kind] of interleave(['first', 'hot', 'distinct'] as const, ROUNDS).entries()) {
    const c = cases[kind];
    const vol = path.join(ctx.work, `protect-${kind}.vol`);
    fs.rmSync(vol, { force: true });
    const [cmd, argv] = cliCommand(['restore', '--to', vol, '--as-of', new Date(T0 + c.seq * 1000).toISOString(), '--from', c.dir, '--quiet']);
    t[kind].push(seconds(() => run(cmd, argv)));
    if (t[kind].length === 1) {
      const raw = path.join(ctx.work, `protect-${kind}.raw`);
      const [c2, a2] = cliCommand(['volume', 'export', vol, '--to', raw, '--force', '--quiet']);
      run(c2, a2);
      check(raw, c.model);
      fs.rmSync(raw, { force: true });
    }
    fs.rmSync(vol, { force: true });
    ctx.log(`protect-restore ${i + 1}/${3 * ROUNDS}: ${kind} ${t[kind].at(-1)!.toFixed(2)} s`);
  }
  for (const d of Object.values(dirs)) fs.rmSync(d, { recursive: true, force: true });
  record(row('protect-restore', `restore --as-of from a protection destination (600 intervals x 64 writes of 4 KiB to 1024 hot blocks, 256 MiB disk): as of the last interval (38 400 writes) vs as of the first (64 writes); seconds, median of ${ROUNDS} each`, 's', { measured: t.hot, baseline: t.first }, median(t.hot), median(t.first), { on: 'ratio', op: '<=', value: 2 }));
  record(row('protect-restore-distinct', `the same restore when the 38 400 writes are to as many distinct blocks vs to 1024 hot blocks: what the cost follows; seconds, median of ${ROUNDS} each`, 's', { measured: t.distinct, baseline: t.hot }, median(t.distinct), median(t.hot), null));
}
