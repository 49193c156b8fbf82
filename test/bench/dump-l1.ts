// dump-l1: an incremental after 1% of the 4 GiB volume's blocks changed (the image
// re-imported with 10486 blocks given new contents, then snapshot "changed"; see
// dump-fixtures.ts): `imgstream dump --level 1` (default zstd) to a file, + sync, against
// what a user without imgstream would run to refresh a copy of the volume file: rsync
// of the file to an rsync daemon on 127.0.0.1 (--inplace --no-whole-file: the delta
// algorithm, written in place; --sparse for the image's holes; --archive), + sync of the
// copy. Before each timed rsync the daemon's copy is the unchanged volume file, put in
// its directory untimed by cp --sparse=always (the bytes a first rsync would leave
// there, in a fraction of a first rsync's time). Wall time; target: <= 0.1 x rsync.
// Without rsync the row says "skipped: rsync not installed".
//
// dump-l1-bytes: the same level-1 dump with --compress none must stay within 1.1 x the
// changed data (changed data blocks x 4 KiB) + 1 MiB; the image also carries the map
// blocks the change rewrote (write-anywhere), so its block count is shown beside the
// changed data blocks.
//
// dump-l1-8g: the same number of changed blocks on an 8 GiB volume filled the same way,
// its level-1 dump against the 4 GiB one's (interleaved, 3 each): an incremental costs
// what changed, not what the volume holds; target <= 1.2 x.
import fs from 'node:fs';
import path from 'node:path';
import { cliCommand, cliJson, parseJsonOutput } from './cli.js';
import type { BenchContext } from './context.js';
import { interleave, median, run, seconds } from './measure.js';
import { measuredCli, memoryRow } from './peak-memory.js';
import { row, skipped, type BenchRow } from './result.js';
import { RsyncDaemon } from './rsync-daemon.js';
import { volumeData } from './volume-input.js';
import { settle } from './cache-state.js';
import { BASE, CHANGED, buildVolume, changeVolume, changedVolume4, dumpArgs, l1Stream, settleFor, type DumpJson, type SnapshotJson, type TestVolume } from './dump-fixtures.js';

const ROUNDS = 3;
const RSYNC = ['--archive', '--inplace', '--no-whole-file', '--sparse', '--stats'];
const BIG_BYTES = 8 * 2 ** 30;
const MIB = 2 ** 20;

interface Level1 {
  vol: TestVolume;
  changed: SnapshotJson;
  changedData: number;
}

/** A level-1 image is the changed data blocks plus at most the map blocks of the changed snapshot. */
function checkL1(l: Level1, r: DumpJson): void {
  const maxMap = l.changed.blocks - l.changed.mappedBlocks;
  if (r.level !== 1 || r.expression !== `${CHANGED} - ${BASE}` || r.blocks < l.changedData || r.blocks > l.changedData + maxMap || r.bytes !== r.blocks * 4096) {
    throw new Error(`level-1 dump of ${path.basename(l.vol.path)}: "${r.expression}" with ${r.blocks} blocks, expected "${CHANGED} - ${BASE}" with ${l.changedData} changed data blocks + at most ${maxMap} map blocks`);
  }
}

export async function benchDumpL1(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const ch = await changedVolume4(ctx);
  const l4: Level1 = { vol: ch.vol, changed: ch.changed, changedData: ch.image.changes!.blocks.length };
  const out = path.join(ctx.work, 'dump-l1.out');
  const peaks: Array<number | null> = [];
  const dumpL1 = async (l: Level1): Promise<number> => {
    fs.rmSync(out, { force: true });
    await settleFor(ctx, [l.vol.path], []);
    const m = measuredCli(ctx, dumpArgs(l.vol, 1, CHANGED, out), out);
    checkL1(l, parseJsonOutput<DumpJson>(m.stdout));
    fs.rmSync(out, { force: true });
    if (l === l4) peaks.push(m.peakBytes);
    return m.seconds;
  };

  // against rsync to a daemon
  const what = `imgstream dump --level 1 (zstd) of the 4 GiB volume after ${l4.changedData} blocks (1%) changed, to a file, + sync, vs rsync ${RSYNC.filter((o) => o !== '--stats').join(' ')} of the volume file to a local rsync daemon holding the unchanged file, + sync; wall time, median of ${ROUNDS} each`;
  const dumps: number[] = [];
  if (ch.before) {
    const rsyncs: number[] = [];
    const literal: number[] = [];
    const daemon = await RsyncDaemon.start(ctx.work);
    const name = path.basename(ch.vol.path);
    const dest = path.join(daemon.dir, name);
    try {
      for (const [i, step] of interleave(['rsync', 'dump'] as const, ROUNDS).entries()) {
        if (step === 'dump') dumps.push(await dumpL1(l4));
        else {
          run('cp', ['--sparse=always', ch.before, dest]); // the daemon's copy: the unchanged file
          const used = await volumeData(ch.vol.path);
          settle(ctx.cache, [used, { ...used, path: dest }]);
          let stdout = '';
          rsyncs.push(seconds(() => {
            stdout = run('rsync', [...RSYNC, ch.vol.path, daemon.url(name)]);
            run('sync', [dest]);
          }));
          literal.push(Number(/Literal data: ([\d,]+)/.exec(stdout)?.[1].replace(/,/g, '') ?? NaN));
          if (fs.statSync(dest).size !== fs.statSync(ch.vol.path).size) throw new Error('rsync left a copy of another size');
        }
        ctx.log(`dump-l1 ${i + 1}/${2 * ROUNDS}: ${step} ${(step === 'dump' ? dumps : rsyncs).at(-1)!.toFixed(2)} s`);
      }
    } finally {
      daemon.stop();
      fs.rmSync(daemon.dir, { recursive: true, force: true });
      fs.rmSync(ch.before, { force: true });
    }
    record(row('dump-l1', what, 's', { measured: dumps, baseline: rsyncs }, median(dumps), median(rsyncs), { on: 'ratio', op: '<=', value: 0.1 }));
    ctx.note(`dump-l1: rsync sent ${(median(literal) / MIB).toFixed(1)} MiB of literal data per run (median), and read the whole ${(fs.statSync(ch.vol.path).size / 2 ** 30).toFixed(1)} GiB volume file on both ends.`);
  } else {
    for (let k = 0; k < ROUNDS; k++) dumps.push(await dumpL1(l4));
    record(skipped('dump-l1', what, 's', 'rsync not installed (apt-get install rsync)', dumps));
  }

  // stream size against the changed data
  const l1 = await l1Stream(ctx);
  checkL1(l4, l1.result);
  const changedBytes = l4.changedData * 4096;
  const limit = Math.round(((1.1 * changedBytes + MIB) / MIB) * 10) / 10;
  record(
    row(
      'dump-l1-bytes',
      `level-1 stream of the same change with --compress none (image: ${l1.result.blocks} blocks = ${l4.changedData} changed data blocks + ${l1.result.blocks - l4.changedData} map blocks) vs the changed data (${l4.changedData} x 4 KiB); target <= 1.1 x changed data + 1 MiB`,
      'MiB',
      { measured: [l1.result.streamBytes / MIB], baseline: [changedBytes / MIB] },
      l1.result.streamBytes / MIB,
      changedBytes / MIB,
      { on: 'measured', op: '<=', value: limit },
    ),
  );

  // the same change on a volume twice the size
  const v8 = await buildVolume(ctx, 'dump8.vol', BIG_BYTES, 8484);
  try {
    ctx.log('dump-l1: level 0 of the 8 GiB volume into the catalog (to stdout through a pipe, discarded)');
    // a pipe, not /dev/null: a dump to a device that keeps nothing is no base for a later level
    const [node, argv] = cliCommand(['dump', v8.path, '--level', '0', '--snapshot', BASE, '--to', '-', '--compress', 'none', '--catalog', v8.catalog]);
    run('/bin/bash', ['-c', 'set -o pipefail; "$0" "$@" | cat > /dev/null', node, ...argv], { stdio: ['ignore', 'ignore', 'pipe'] });
    await changeVolume(ctx, v8, l4.changedData, 8585);
    const l8: Level1 = { vol: v8, changed: cliJson<SnapshotJson>(['snapshot', 'create', v8.path, CHANGED]), changedData: l4.changedData };
    const t = { '4g': [] as number[], '8g': [] as number[] };
    for (const [i, step] of interleave(['4g', '8g'] as const, ROUNDS).entries()) {
      t[step].push(await dumpL1(step === '4g' ? l4 : l8));
      ctx.log(`dump-l1-8g ${i + 1}/${2 * ROUNDS}: ${step} ${t[step].at(-1)!.toFixed(2)} s`);
    }
    record(row('dump-l1-8g', `the level-1 dump of the same ${l4.changedData} changed blocks on an 8 GiB volume filled the same way vs on the 4 GiB volume (planes ${v8.planeBytes / 1024} vs ${ch.vol.planeBytes / 1024} KiB); wall time, median of ${ROUNDS} each`, 's', { measured: t['8g'], baseline: t['4g'] }, median(t['8g']), median(t['4g']), { on: 'ratio', op: '<=', value: 1.2 }));
  } finally {
    fs.rmSync(v8.path, { force: true });
  }
  // planes: the two the expression names ("changed - base")
  record(await memoryRow(ctx, 'dump-l1-rss', 'level-1 dumps of the 4 GiB volume above', peaks, 2, ch.vol.planeBytes));
}
