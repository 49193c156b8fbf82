// import and reimport, through the CLI as a user runs them.
//
// import: a 4 GiB image (pseudo-random, ~10% zero blocks) into an empty volume, vs
// `cat image > copy` of the same bytes; every side followed by a sync of what it wrote
// inside the timed region, so all pay writeback. Target: import throughput >= 0.7 x cat
// throughput. GNU cat (coreutils 9) copies with copy_file_range, in the kernel with one
// memory copy, which no importer reading into user space can do, so `dd bs=8M` (read +
// write, as the import does) is measured too, as context. Each is measured 4 times, in
// the order cat, dd, import, import, dd, cat twice, so that drift (this virtual disk's
// write speed varies by 2x from minute to minute) weighs on all sides alike; medians of 4.
//
// reimport: 1% of the image's blocks changed at random, imported again into the same
// volume; 3 times (changed, changed back, changed again: each a 1% difference from the
// volume), median vs the first imports. Target: <= 0.3 x the first import's time.
import fs from 'node:fs';
import path from 'node:path';
import { settle } from './cache-state.js';
import { cliCommand, cliJson, parseJsonOutput } from './cli.js';
import type { BenchContext } from './context.js';
import { median, run, seconds } from './measure.js';
import { row, type BenchRow } from './result.js';
import { BlockChanges, writeRandomImage } from './random-image.js';
import { volumeData } from './volume-input.js';

const IMAGE_BYTES = 4 * 2 ** 30;
const ZERO_BLOCKS = 0.1;
const CHANGED_BLOCKS = 0.01;
const REIMPORTS = 3;
const ROUND = ['cat', 'dd', 'import', 'import', 'dd', 'cat'] as const;
const ORDER = [...ROUND, ...ROUND];

interface ImportJson {
  bytes: number;
  changedBlocks: number;
  unchangedBlocks: number;
  unmappedBlocks: number;
}

export async function benchImport(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const imagePath = path.join(ctx.work, 'image.raw');
  const copy = path.join(ctx.work, 'image.copy');
  const vol = path.join(ctx.work, 'import.vol');

  ctx.log(`writing a ${IMAGE_BYTES / 2 ** 30} GiB image (xorshift, ${ZERO_BLOCKS * 100}% zero blocks)`);
  const image = writeRandomImage(imagePath, IMAGE_BYTES, ZERO_BLOCKS, 42);
  const dataBlocks = image.blocks - image.zeroBlocks;
  const mb = (s: number) => IMAGE_BYTES / 1e6 / s;

  const importOnce = (): { seconds: number; result: ImportJson } => {
    const [node, args] = cliCommand(['volume', 'import', vol, '--from', image.path, '--json']);
    let stdout = '';
    const t = seconds(() => {
      stdout = run(node, args);
      run('sync', [vol]);
    });
    return { seconds: t, result: parseJsonOutput<ImportJson>(stdout) };
  };

  const copies = { cat: [] as number[], dd: [] as number[] };
  const script = { cat: 'cat "$1" > "$2" && sync "$2"', dd: 'dd if="$1" of="$2" bs=8M status=none && sync "$2"' };
  const first: number[] = [];
  for (const step of ORDER) {
    fs.rmSync(step === 'import' ? vol : copy, { force: true });
    if (step !== 'import') {
      settle(ctx.cache, [{ path: image.path }]);
      const t = seconds(() => run('sh', ['-c', script[step], 'sh', image.path, copy]));
      if (fs.statSync(copy).size !== IMAGE_BYTES) throw new Error(`${step} copied a wrong number of bytes`);
      copies[step].push(t);
      ctx.log(`import: ${step} + sync ${t.toFixed(2)} s (${mb(t).toFixed(0)} MB/s)`);
    } else {
      cliJson(['volume', 'create', vol, '--size', '4G']);
      settle(ctx.cache, [{ path: image.path }]);
      const { seconds: t, result } = importOnce();
      if (result.changedBlocks !== dataBlocks || result.bytes !== IMAGE_BYTES) {
        throw new Error(`import wrote ${result.changedBlocks} blocks of ${result.bytes} bytes, expected ${dataBlocks} blocks of ${IMAGE_BYTES}`);
      }
      first.push(t);
      ctx.log(`import: volume import + sync ${t.toFixed(2)} s (${mb(t).toFixed(0)} MB/s)`);
    }
  }
  fs.rmSync(copy, { force: true });
  const importMBs = first.map(mb);
  const catMBs = copies.cat.map(mb);
  const ddMBs = copies.dd.map(mb);
  record(row('import', `imgstream volume import of a 4 GiB image (10% zero blocks) into an empty volume, + sync, vs cat image > copy + sync; throughput, median of 4 each`, 'MB/s', { measured: importMBs, baseline: catMBs }, median(importMBs), median(catMBs), { on: 'ratio', op: '>=', value: 0.7 }));
  record(row('import-vs-dd', `the same imports vs dd if=image of=copy bs=8M + sync (read + write through user space, like the import); median of 4 each`, 'MB/s', { measured: importMBs, baseline: ddMBs }, median(importMBs), median(ddMBs), null));

  const changes = BlockChanges.pick(image, CHANGED_BLOCKS, 43);
  const again: number[] = [];
  for (let k = 0; k < REIMPORTS; k++) {
    const undo = k % 2 === 1;
    changes.apply(undo ? 'before' : 'after');
    settle(ctx.cache, [{ path: image.path }, await volumeData(vol)]);
    const { seconds: t, result } = importOnce();
    // changed to new random contents: all written; changed back: the ones that were zero are unmapped
    const unmapped = undo ? changes.zeroBefore : 0;
    if (result.changedBlocks !== changes.count - unmapped || result.unmappedBlocks !== unmapped) {
      throw new Error(`re-import wrote ${result.changedBlocks} and unmapped ${result.unmappedBlocks} blocks, expected ${changes.count - unmapped} and ${unmapped}`);
    }
    again.push(t);
    ctx.log(`reimport ${k + 1}/${REIMPORTS}: ${changes.count} blocks changed, ${t.toFixed(2)} s`);
  }
  record(row('reimport', `imgstream volume import of the same image with ${CHANGED_BLOCKS * 100}% of its blocks changed (${changes.count}), + sync, vs the first imports above; median of ${REIMPORTS}`, 's', { measured: again, baseline: first }, median(again), median(first), { on: 'ratio', op: '<=', value: 0.3 }));
  fs.rmSync(vol, { force: true });
  fs.rmSync(image.path, { force: true });
}
