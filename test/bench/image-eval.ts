// image-eval: evaluating "s3 + s2 - s1" on the 1 TiB volume (three 32 MiB planes),
// against copying the same three plane byte ranges of the volume file to a file. Both
// read the same bytes from the same cache state; the evaluation must cost at most twice
// the copy. Like is measured against like: the in-process evaluation against a copy in
// this process (1 MiB reads and writes, as dd bs=1M does), the CLI (a fresh node
// process: startup, oclif, open, evaluate) against dd processes; the CLI has no target.
import fs from 'node:fs';
import path from 'node:path';
import { storageImageOf, withVolume } from '../../src/volume/index.js';
import { settle, type Input } from './cache-state.js';
import { cliCommand, parseJsonOutput } from './cli.js';
import type { BenchContext } from './context.js';
import { median, run, seconds, secondsAsync } from './measure.js';
import { row, type BenchRow } from './result.js';
import { bigVolume, type BigVolume } from './big-volume.js';

export const EXPRESSION = 's3 + s2 - s1';
const REPEATS = 3;

interface ImageJson {
  blocks: number;
  extents: number;
}

export async function benchImageEval(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const big = await bigVolume(ctx);
  const out = path.join(ctx.work, 'planes.copy');
  const order = [big.planes.s3, big.planes.s2, big.planes.s1];
  const inputs: Input[] = order.map((p) => ({ path: big.path, offset: p.offset, bytes: p.bytes }));
  const script = order
    .map((p) => `dd if="$1" of="$2" bs=1M iflag=skip_bytes,count_bytes oflag=append conv=notrunc skip=${p.offset} count=${p.bytes} status=none`)
    .join(' && ');
  const [node, cliArgs] = cliCommand(['image', big.path, EXPRESSION, '--json']);

  const total = order.reduce((a, p) => a + p.bytes, 0);
  const copy: number[] = [];
  const dd: number[] = [];
  const lib: number[] = [];
  const cli: number[] = [];
  for (let k = 0; k < REPEATS; k++) {
    fs.rmSync(out, { force: true });
    settle(ctx.cache, inputs);
    copy.push(seconds(() => copyRanges(big.path, order, out)));
    if (fs.statSync(out).size !== total) throw new Error('the copy wrote a wrong number of bytes');

    fs.rmSync(out, { force: true });
    settle(ctx.cache, inputs);
    dd.push(seconds(() => run('sh', ['-c', script, 'sh', big.path, out])));
    if (fs.statSync(out).size !== total) throw new Error('dd copied a wrong number of bytes');

    settle(ctx.cache, inputs);
    const t = await secondsAsync(() => withVolume(big.path, false, (vol) => storageImageOf(vol, EXPRESSION)));
    check(big, t.value, 'library');
    lib.push(t.seconds);

    settle(ctx.cache, inputs);
    let stdout = '';
    cli.push(seconds(() => (stdout = run(node, cliArgs))));
    check(big, parseJsonOutput<ImageJson>(stdout), 'CLI');
    ctx.log(`image-eval ${k + 1}/${REPEATS}: copy ${ms(copy[k])}, library ${ms(lib[k])}; dd ${ms(dd[k])}, CLI ${ms(cli[k])}`);
  }
  fs.rmSync(out, { force: true });

  const mib = big.planes.s1.bytes / 2 ** 20;
  record(row('image-eval', `evaluate "${EXPRESSION}" in-process (open, one pass over 3 planes of ${mib} MiB, close) vs copying the same 3 plane byte ranges to a file in-process (1 MiB reads and writes); median of ${REPEATS}`, 's', { measured: lib, baseline: copy }, median(lib), median(copy), { on: 'ratio', op: '<=', value: 2 }));
  record(row('image-eval-cli', `imgstream image VOL "${EXPRESSION}" --json (a fresh node process) vs the same copy by sh + 3 dd bs=1M processes; median of ${REPEATS}`, 's', { measured: cli, baseline: dd }, median(cli), median(dd), null));

  // context for the baseline: starting sh and three dd processes that copy nothing
  const idle = script.replace(/count=\d+/g, 'count=0');
  const spawn = [0, 1, 2].map(() => seconds(() => run('sh', ['-c', idle, 'sh', big.path, '/dev/null'])));
  ctx.note(`image-eval-cli: the dd baseline includes starting sh and 3 dd processes, ${ms(median(spawn))} on its own (median of 3).`);

  // context for the CLI figure: what a command that does nothing costs
  const [n, versionArgs] = cliCommand(['--version']);
  const startup = [0, 1, 2].map(() => seconds(() => run(n, versionArgs)));
  ctx.note(`image-eval-cli: \`imgstream --version\` alone takes ${ms(median(startup))} (median of 3): node and oclif startup, included in the CLI figure.`);
}

/** Copies byte ranges of a file to a new file, 1 MiB at a time. */
function copyRanges(file: string, ranges: Array<{ offset: number; bytes: number }>, to: string): void {
  const buf = Buffer.allocUnsafe(1 << 20);
  const src = fs.openSync(file, 'r');
  const dst = fs.openSync(to, 'w');
  try {
    for (const r of ranges) {
      for (let done = 0; done < r.bytes; ) {
        const n = fs.readSync(src, buf, 0, Math.min(buf.length, r.bytes - done), r.offset + done);
        if (n === 0) throw new Error(`${file}: ends inside a plane`);
        fs.writeSync(dst, buf, 0, n);
        done += n;
      }
    }
  } finally {
    fs.closeSync(src);
    fs.closeSync(dst);
  }
}

function check(big: BigVolume, got: ImageJson, how: string): void {
  const want = big.expected;
  if (got.blocks !== want.blocks || got.extents !== want.extents) {
    throw new Error(`${how} evaluation of "${EXPRESSION}" gave ${got.blocks} blocks / ${got.extents} extents, expected ${want.blocks} / ${want.extents}`);
  }
}

function ms(s: number): string {
  return `${(s * 1000).toFixed(1)} ms`;
}
