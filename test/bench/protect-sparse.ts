// protect-sparse-*: export and restore as of a point from a protection destination whose
// disk is large and mostly empty (a 256 GiB disk holding 16 MiB: a seed of 8 MiB and 16
// intervals of 512 KiB) against the same from a 1 GiB disk holding the same 16 MiB. The
// cost must follow what the disk holds, not its size: the export at most 2x for 256x the
// disk; the restore at most 4x, since it still reads what follows the size, at 1/1000 of
// it: base.sums (4 bytes per block, checked against a zero block's where the base maps
// nothing) and the planes in use (a bit per VBN), about 0.6 s of 1.4 s at 256 GiB. Before
// the unmapped parts were skipped, the export read, zero-filled and checksummed every
// block (6.6 minutes for 256 GiB), and the restore read the planes of every free snapshot
// slot (8 GiB of holes, 15 s). Median of 3 each, interleaved; each output is checked
// against the blocks written.
import fs from 'node:fs';
import path from 'node:path';
import { LocalProtectDestination } from '../../src/journal/destination.js';
import type { IntervalBlock } from '../../src/journal/destination-api.js';
import { cliCommand } from './cli.js';
import type { BenchContext } from './context.js';
import { interleave, median, run, seconds } from './measure.js';
import { row, type BenchRow } from './result.js';

const BS = 4096;
const ROUNDS = 3;
const SEED_BLOCKS = 2048;
const INTERVALS = 16;
const PER_INTERVAL = 128;
const T0 = Date.UTC(2026, 11, 6, 9, 0, 0);
const SIZES = { small: 1 << 30, large: 256 * 2 ** 30 };

async function* iterate(blocks: IntervalBlock[]): AsyncGenerator<IntervalBlock> {
  for (const b of blocks) yield b;
}

function blockOf(lbn: number, version: number): Buffer {
  const b = Buffer.alloc(BS, (lbn + version) % 251 || 1);
  b.writeUInt32LE(version, 0);
  return b;
}

/** The LBNs written: the seed's at the start of the disk, each interval's spread over the first GiB (the same on both disks). */
function plan(): { seed: number[]; intervals: number[][] } {
  const seed = Array.from({ length: SEED_BLOCKS }, (_, i) => i);
  const intervals = Array.from({ length: INTERVALS }, (_, k) => Array.from({ length: PER_INTERVAL }, (_, i) => 4096 + k * 8192 + i * 61));
  return { seed, intervals };
}

async function build(dir: string, size: number, uuid: string): Promise<Map<number, number>> {
  const d = new LocalProtectDestination(dir);
  await d.open({ uuid: uuid.repeat(32), path: `sparse-${size}.vol`, blockSize: BS, logicalSize: size }, 24 * 3600_000);
  const { seed, intervals } = plan();
  const last = new Map<number, number>();
  for (const l of seed) last.set(l, 0);
  await d.seed({ journalTo: 0, time: T0, blockCount: seed.length, blocks: iterate(seed.map((lbn) => ({ lbn, data: blockOf(lbn, 0) }))) });
  for (let seq = 1; seq <= INTERVALS; seq++) {
    const lbns = intervals[seq - 1];
    for (const l of lbns) last.set(l, seq);
    await d.append({ seq, start: T0 + (seq - 1) * 1000, end: T0 + seq * 1000, journalFrom: seq - 1, journalTo: seq, kind: 'journal', snapshots: [], blockCount: lbns.length, blocks: iterate(lbns.map((lbn) => ({ lbn, data: blockOf(lbn, seq) }))) });
  }
  await d.close();
  return last;
}

function check(raw: string, size: number, last: Map<number, number>): void {
  if (fs.statSync(raw).size !== size) throw new Error(`${raw}: ${fs.statSync(raw).size} bytes, not ${size}`);
  const fd = fs.openSync(raw, 'r');
  try {
    const b = Buffer.alloc(BS);
    for (const [lbn, v] of last) {
      fs.readSync(fd, b, 0, BS, lbn * BS);
      if (!b.equals(blockOf(lbn, v))) throw new Error(`${raw}: block ${lbn} is not the version of interval ${v}`);
    }
  } finally {
    fs.closeSync(fd);
  }
}

export async function benchProtectSparse(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const dirs = { small: path.join(ctx.work, 'sparse-small.cdp'), large: path.join(ctx.work, 'sparse-large.cdp') };
  const models = { small: await build(dirs.small, SIZES.small, 'c'), large: await build(dirs.large, SIZES.large, 'd') };
  ctx.log('protect-sparse: destinations built');
  const asOf = new Date(T0 + INTERVALS * 1000).toISOString();
  const t = { exportSmall: [] as number[], exportLarge: [] as number[], restoreSmall: [] as number[], restoreLarge: [] as number[] };
  for (const [i, kind] of interleave(['small', 'large'] as const, ROUNDS).entries()) {
    const raw = path.join(ctx.work, `sparse-${kind}.raw`);
    const [c1, a1] = cliCommand(['volume', 'export', dirs[kind], '--as-of', asOf, '--to', raw, '--force', '--quiet']);
    (kind === 'small' ? t.exportSmall : t.exportLarge).push(seconds(() => run(c1, a1)));
    if (i < 2) check(raw, SIZES[kind], models[kind]);
    fs.rmSync(raw, { force: true });
    const vol = path.join(ctx.work, `sparse-${kind}.vol`);
    fs.rmSync(vol, { force: true });
    const [c2, a2] = cliCommand(['restore', '--to', vol, '--as-of', asOf, '--from', dirs[kind], '--quiet']);
    (kind === 'small' ? t.restoreSmall : t.restoreLarge).push(seconds(() => run(c2, a2)));
    if (i < 2) {
      const [c3, a3] = cliCommand(['volume', 'export', vol, '--to', raw, '--force', '--quiet']);
      run(c3, a3);
      check(raw, SIZES[kind], models[kind]);
      fs.rmSync(raw, { force: true });
    }
    fs.rmSync(vol, { force: true });
    ctx.log(`protect-sparse ${i + 1}/${2 * ROUNDS}: ${kind} export ${(kind === 'small' ? t.exportSmall : t.exportLarge).at(-1)!.toFixed(2)} s, restore ${(kind === 'small' ? t.restoreSmall : t.restoreLarge).at(-1)!.toFixed(2)} s`);
  }
  for (const d of Object.values(dirs)) fs.rmSync(d, { recursive: true, force: true });
  const what = `from a protection destination of a 256 GiB disk holding 16 MiB (a seed and ${INTERVALS} intervals) vs of a 1 GiB disk holding the same; seconds, median of ${ROUNDS} each`;
  record(row('protect-sparse-export', `volume export --as-of ${what}`, 's', { measured: t.exportLarge, baseline: t.exportSmall }, median(t.exportLarge), median(t.exportSmall), { on: 'ratio', op: '<=', value: 2 }));
  record(row('protect-sparse-restore', `restore --as-of ${what}`, 's', { measured: t.restoreLarge, baseline: t.restoreSmall }, median(t.restoreLarge), median(t.restoreSmall), { on: 'ratio', op: '<=', value: 4 }));
}
