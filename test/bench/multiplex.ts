// mux-*: multiplexed tape dumps (dump VOL1 VOL2 VOL3 --to tape:DIR --multiplex) of three
// volumes (half-compressible images, 10% zero blocks; 256 MiB each by default, --mux-size
// to change it, e.g. 1G) through the CLI, against the same three dumps one after another,
// each to its own tape file, in the same run.
//
// mux-throttled: every source's reads slowed (the test-only IMGSTREAM_TEST_SOURCE_RATE)
// to a third of the tape writer's rate, which is measured first as the rate of an
// unthrottled multiplexed dump of the three volumes (--compress none, so the rates are
// of the same bytes; the writer never waits there): multiplexed wall time vs the three
// throttled dumps in sequence, target <= 0.45.
// mux-idle: the share of the multiplexed dump's time the tape waited for data, from its
// backup log (INFO).
// mux-unthrottled: the default dump (zstd on worker threads) of the three volumes,
// multiplexed vs sequential, target <= 1.05.
// mux-restore: restore of one volume from the three-way multiplexed tape file (reading
// its own members, found with the backup log) vs from its own tape file, target <= 1.2.
import fs from 'node:fs';
import path from 'node:path';
import { cliCommand, parseJsonOutput } from './cli.js';
import type { BenchContext } from './context.js';
import { interleave, median, run, seconds } from './measure.js';
import { row, type BenchRow } from './result.js';
import { BASE, buildVolume, settleFor, type TestVolume } from './dump-fixtures.js';

const ROUNDS = 2;
let volumeBytes = 256 * 2 ** 20;

/** --mux-size: the size of each of the three volumes. */
export function setMultiplexVolumeBytes(bytes: number): void {
  volumeBytes = bytes;
}

interface MuxJson {
  idleMs: number;
  elapsedMs: number;
  sources: Array<{ ok: boolean; dump?: { streamBytes: number } }>;
}

function cli<T>(args: string[], env: Record<string, string> = {}): T {
  const [node, argv] = cliCommand([...args, '--json']);
  return parseJsonOutput<T>(run('nice', [node, ...argv], { env: { ...process.env, ...env } }));
}

function freshTape(ctx: BenchContext, name: string): string {
  const dir = path.join(ctx.work, name);
  fs.rmSync(dir, { recursive: true, force: true });
  return dir;
}

export async function benchMultiplex(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const vols: TestVolume[] = [];
  for (const [i, n] of ['a', 'b', 'c'].entries()) vols.push(await buildVolume(ctx, `mux-${n}.vol`, volumeBytes, 5151 + i));
  const paths = vols.map((v) => v.path);
  const catalog = vols[0].catalog;
  const dumpTo = (vol: string, tape: string, extra: string[], env: Record<string, string> = {}): number =>
    seconds(() => cli(['dump', vol, '--level', '0', '--snapshot', BASE, '--to', `tape:${tape}`, '--new-tape', '--catalog', catalog, ...extra], env));
  const size = `${(volumeBytes / 2 ** 20).toFixed(0)} MiB`;
  try {
    // the tape writer's rate: what the multiplexed writer sustains when no source makes it
    // wait (the three volumes, unthrottled, uncompressed). On this machine the CPU, not the
    // tape file, bounds it: one source at a time runs faster than three in one process
    await settleFor(ctx, paths, []);
    const t = seconds(() => cli(['dump', ...paths, '--level', '0', '--snapshot', BASE, '--to', `tape:${freshTape(ctx, 'mux-rate')}`, '--new-tape', '--multiplex', '--compress', 'none', '--catalog', catalog]));
    const writerRate = (vols.reduce((n, v) => n + v.dataBlocks, 0) * 4096) / t;
    // tape files are removed once measured: gigabytes of them left in the page cache made
    // the later, faster runs reclaim memory as they wrote (the 1 GiB multiplexed runs took
    // twice as long as the calibration)
    const dropTapes = () => {
      for (const n of ['mux-rate', 'mux-mux', 'mux-seq-0', 'mux-seq-1', 'mux-seq-2']) fs.rmSync(path.join(ctx.work, n), { recursive: true, force: true });
    };
    dropTapes();
    const rate = Math.floor(writerRate / 3);
    ctx.log(`tape writer: ${(writerRate / 1e6).toFixed(0)} MB/s; sources throttled to ${(rate / 1e6).toFixed(0)} MB/s`);
    const slow = { IMGSTREAM_TEST_SOURCE_RATE: String(rate) };

    const th = { mux: [] as number[], seq: [] as number[] };
    const idle = { idle: [] as number[], elapsed: [] as number[] };
    for (const [i, step] of interleave(['seq', 'mux'] as const, ROUNDS).entries()) {
      await settleFor(ctx, paths, []);
      if (step === 'seq') th.seq.push(paths.reduce((s, p, k) => s + dumpTo(p, freshTape(ctx, `mux-seq-${k}`), ['--compress', 'none'], slow), 0));
      else {
        let r: MuxJson | null = null;
        th.mux.push(seconds(() => (r = cli<MuxJson>(['dump', ...paths, '--level', '0', '--snapshot', BASE, '--to', `tape:${freshTape(ctx, 'mux-mux')}`, '--new-tape', '--multiplex', '--compress', 'none', '--catalog', catalog], slow))));
        if (!r!.sources.every((s) => s.ok)) throw new Error('a source of the multiplexed dump failed');
        idle.idle.push(r!.idleMs / 1000);
        idle.elapsed.push(r!.elapsedMs / 1000);
      }
      dropTapes();
      ctx.log(`mux-throttled ${i + 1}/${2 * ROUNDS}: ${step} ${th[step].at(-1)!.toFixed(2)} s`);
    }
    record(row('mux-throttled', `dump of three ${size} volumes whose reads are throttled to a third of the tape writer's ${(writerRate / 1e6).toFixed(0)} MB/s (IMGSTREAM_TEST_SOURCE_RATE=${(rate / 1e6).toFixed(0)}MB/s, --compress none): multiplexed onto one tape file vs the three dumps one after another; wall time, median of ${ROUNDS}`, 's', { measured: th.mux, baseline: th.seq }, median(th.mux), median(th.seq), { on: 'ratio', op: '<=', value: 0.45 }));
    record(row('mux-idle', 'time the tape waited for data during the throttled multiplexed dump (the backup log\'s idle time) vs the time it was written (first to last member); the ratio is the idle fraction. The tape here is a file, far faster than the sources', 's', { measured: idle.idle, baseline: idle.elapsed }, median(idle.idle), median(idle.elapsed), null));

    const un = { mux: [] as number[], seq: [] as number[] };
    for (const [i, step] of interleave(['seq', 'mux'] as const, ROUNDS).entries()) {
      if (i < 2 * ROUNDS - 2) dropTapes(); // the last of each stay, for mux-restore
      await settleFor(ctx, paths, []);
      if (step === 'seq') un.seq.push(paths.reduce((s, p, k) => s + dumpTo(p, freshTape(ctx, `mux-seq-${k}`), []), 0));
      else un.mux.push(seconds(() => cli(['dump', ...paths, '--level', '0', '--snapshot', BASE, '--to', `tape:${freshTape(ctx, 'mux-mux')}`, '--new-tape', '--multiplex', '--catalog', catalog])));
      ctx.log(`mux-unthrottled ${i + 1}/${2 * ROUNDS}: ${step} ${un[step].at(-1)!.toFixed(2)} s`);
    }
    record(row('mux-unthrottled', `dump of three ${size} volumes (zstd, the default), multiplexed onto one tape file vs one after another, each to its own tape file; wall time, median of ${ROUNDS}`, 's', { measured: un.mux, baseline: un.seq }, median(un.mux), median(un.seq), { on: 'ratio', op: '<=', value: 1.05 }));

    // restore of volume b: from the last multiplexed file vs from its own (last sequential) tape file
    const rs = { mux: [] as number[], own: [] as number[] };
    const dst = path.join(ctx.work, 'mux-restored.vol');
    for (const [i, step] of interleave(['own', 'mux'] as const, ROUNDS).entries()) {
      fs.rmSync(dst, { force: true });
      const from = step === 'mux' ? [`tape:${path.join(ctx.work, 'mux-mux')}#1`, '--volume', paths[1]] : [`tape:${path.join(ctx.work, 'mux-seq-1')}#1`];
      await settleFor(ctx, [], [path.join(ctx.work, step === 'mux' ? 'mux-mux' : 'mux-seq-1', 'file0001.tar')]);
      rs[step].push(seconds(() => cli(['restore', '--from', ...from, '--to', dst])));
      ctx.log(`mux-restore ${i + 1}/${2 * ROUNDS}: ${step} ${rs[step].at(-1)!.toFixed(2)} s`);
    }
    fs.rmSync(dst, { force: true });
    record(row('mux-restore', `restore of one ${size} volume from a three-way multiplexed tape file (only its members, found with the backup log) vs from its own tape file; wall time, median of ${ROUNDS}`, 's', { measured: rs.mux, baseline: rs.own }, median(rs.mux), median(rs.own), { on: 'ratio', op: '<=', value: 1.2 }));
  } finally {
    for (const n of ['mux-rate', 'mux-mux', 'mux-seq-0', 'mux-seq-1', 'mux-seq-2']) fs.rmSync(path.join(ctx.work, n), { recursive: true, force: true });
    for (const v of vols) fs.rmSync(v.path, { force: true });
  }
}
