// dump-none and dump-zstd: a level-0 dump of the 4 GiB volume (dump-fixtures.ts: half-
// compressible blocks, 10% zero blocks, so ~3.6 GiB of data) to a file, through the CLI
// as a user runs it, against the same bytes (the image's non-zero blocks as one file)
// copied or compressed by the usual tools. Every side is followed by a sync of what it
// wrote inside the timed region. Throughputs in MB/s of block data: the dump's image
// bytes (data blocks and the map blocks it also carries) vs the file's bytes.
//
// dump-none: --compress none vs `cat data > copy` (GNU cat copies with copy_file_range,
// in the kernel, which no program reading into user space can do), target >= 0.7; and
// vs `dd bs=1M` (read + write through user space, like the dump), as context.
// dump-zstd: the default (zstd level 1, on worker threads) vs `zstd -1 -T2 data -o out`,
// target >= 1.0; both output sizes are reported.
//
// Each side 3 times, interleaved (A B C, C B A, A B C) so that drift in this shared
// machine's disk and CPU weighs on all alike; medians. The peak RSS of every dump is
// taken too (peak-memory.ts). One output of each kind is read back with `imgstream verify`.
import fs from 'node:fs';
import path from 'node:path';
import { cliJson, parseJsonOutput } from './cli.js';
import type { BenchContext } from './context.js';
import { interleave, median, run, seconds } from './measure.js';
import { measuredCli, memoryRow } from './peak-memory.js';
import { row, type BenchRow } from './result.js';
import { BASE, dumpArgs, l0Stream, packedData, releasePackedData, settleFor, volume4, type DumpJson, type TestVolume } from './dump-fixtures.js';

const ROUNDS = 3;

/** Checks a level-0 dump of "base" against the volume: every block of the snapshot, nothing else. */
function checkL0(vol: TestVolume, r: DumpJson, file: string): void {
  if (r.level !== 0 || r.blocks !== vol.base.blocks || r.bytes !== r.blocks * 4096) {
    throw new Error(`level-0 dump of ${BASE}: ${r.blocks} blocks / ${r.bytes} bytes at level ${r.level}, expected ${vol.base.blocks} blocks (the snapshot's VBNs)`);
  }
  const size = fs.statSync(file).size;
  if (r.streamBytes !== size) throw new Error(`dump reported ${r.streamBytes} stream bytes, ${file} has ${size}`);
}

function verifyStream(ctx: BenchContext, file: string, r: DumpJson): void {
  ctx.log(`verifying ${path.basename(file)}`);
  const v = cliJson<{ streams: Array<{ blocks: number; streamBytes: number }> }>(['verify', file]);
  if (v.streams.length !== 1 || v.streams[0].blocks !== r.blocks) throw new Error(`imgstream verify ${file} read ${JSON.stringify(v.streams)}, expected one stream of ${r.blocks} blocks`);
}

export async function benchDumpNone(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const vol = await volume4(ctx);
  const data = await packedData(ctx);
  const out = path.join(ctx.work, 'dump-none.out');
  const copy = path.join(ctx.work, 'dump-none.copy');
  const script = { cat: 'cat "$1" > "$2" && sync "$2"', dd: 'dd if="$1" of="$2" bs=1M status=none && sync "$2"' };
  const t = { cat: [] as number[], dd: [] as number[], dump: [] as number[] };
  const peaks: Array<number | null> = [];
  let last: DumpJson | null = null;
  const steps = interleave(['cat', 'dd', 'dump'] as const, ROUNDS);
  for (const [i, step] of steps.entries()) {
    fs.rmSync(out, { force: true });
    fs.rmSync(copy, { force: true });
    if (step === 'dump') {
      await settleFor(ctx, [vol.path], []);
      const m = measuredCli(ctx, dumpArgs(vol, 0, BASE, out, ['--compress', 'none']), out);
      last = parseJsonOutput<DumpJson>(m.stdout);
      checkL0(vol, last, out);
      t.dump.push(last.bytes / 1e6 / m.seconds);
      peaks.push(m.peakBytes);
    } else {
      await settleFor(ctx, [], [data.path]);
      const s = seconds(() => run('sh', ['-c', script[step], 'sh', data.path, copy]));
      if (fs.statSync(copy).size !== data.bytes) throw new Error(`${step} copied a wrong number of bytes`);
      t[step].push(data.bytes / 1e6 / s);
    }
    ctx.log(`dump-none ${i + 1}/${steps.length}: ${step} ${t[step].at(-1)!.toFixed(0)} MB/s`);
  }
  fs.rmSync(copy, { force: true });
  // the last output is the level-0 stream the level-1 and restore benchmarks build on
  verifyStream(ctx, out, last!);
  const kept = path.join(ctx.work, 'base.l0');
  fs.renameSync(out, kept);
  await l0Stream(ctx, { path: kept, result: last! });

  const gb = (last!.bytes / 1e9).toFixed(2);
  record(row('dump-none', `imgstream dump --level 0 --compress none of the 4 GiB volume (${gb} GB of blocks) to a file, + sync, vs cat of the image's ${(data.bytes / 1e9).toFixed(2)} GB of non-zero blocks to a file, + sync; MB/s, median of ${ROUNDS} each`, 'MB/s', { measured: t.dump, baseline: t.cat }, median(t.dump), median(t.cat), { on: 'ratio', op: '>=', value: 0.7 }));
  record(row('dump-none-vs-dd', `the same dumps vs dd if=data of=copy bs=1M + sync (read + write through user space, like the dump); median of ${ROUNDS} each`, 'MB/s', { measured: t.dump, baseline: t.dd }, median(t.dump), median(t.dd), null));
  // planes: the one the expression names ("base")
  record(await memoryRow(ctx, 'dump-none-rss', 'dump --compress none processes above', peaks, 1, vol.planeBytes));
}

export async function benchDumpZstd(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const vol = await volume4(ctx);
  const data = await packedData(ctx);
  const out = path.join(ctx.work, 'dump-zstd.out');
  const zst = path.join(ctx.work, 'dump-zstd.zst');
  const t = { zstd: [] as number[], dump: [] as number[] };
  const size = { zstd: 0, dump: 0 };
  const peaks: Array<number | null> = [];
  let verified = false;
  const steps = interleave(['zstd', 'dump'] as const, ROUNDS);
  for (const [i, step] of steps.entries()) {
    fs.rmSync(out, { force: true });
    fs.rmSync(zst, { force: true });
    if (step === 'dump') {
      await settleFor(ctx, [vol.path], []);
      const m = measuredCli(ctx, dumpArgs(vol, 0, BASE, out), out);
      const r = parseJsonOutput<DumpJson>(m.stdout);
      checkL0(vol, r, out);
      if (!verified) verifyStream(ctx, out, r);
      verified = true;
      t.dump.push(r.bytes / 1e6 / m.seconds);
      size.dump = r.streamBytes;
      peaks.push(m.peakBytes);
    } else {
      await settleFor(ctx, [], [data.path]);
      const s = seconds(() => run('sh', ['-c', 'zstd -1 -T2 -q -f "$1" -o "$2" && sync "$2"', 'sh', data.path, zst]));
      size.zstd = fs.statSync(zst).size;
      t.zstd.push(data.bytes / 1e6 / s);
    }
    ctx.log(`dump-zstd ${i + 1}/${steps.length}: ${step} ${t[step].at(-1)!.toFixed(0)} MB/s`);
  }
  fs.rmSync(out, { force: true });
  fs.rmSync(zst, { force: true });
  releasePackedData(ctx);

  const sizes = `outputs: dump stream ${(size.dump / 1e9).toFixed(3)} GB, zstd ${(size.zstd / 1e9).toFixed(3)} GB, of ${(data.bytes / 1e9).toFixed(3)} GB of blocks`;
  record(row('dump-zstd', `imgstream dump --level 0 (zstd level 1, default threads) of the 4 GiB volume to a file, + sync, vs zstd -1 -T2 of the image's non-zero blocks to a file, + sync; MB/s of input, median of ${ROUNDS} each; ${sizes}`, 'MB/s', { measured: t.dump, baseline: t.zstd }, median(t.dump), median(t.zstd), { on: 'ratio', op: '>=', value: 1.0 }));
  // planes: the one the expression names ("base")
  record(await memoryRow(ctx, 'dump-zstd-rss', 'dump (zstd) processes above', peaks, 1, vol.planeBytes));
}
