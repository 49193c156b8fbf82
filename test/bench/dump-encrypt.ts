// dump-encrypt: a level-0 dump of a 512 MiB volume (half-compressible blocks, 10% zero
// blocks: dump-fixtures.ts) to a file with --encrypt --key-file, vs the same dump without
// it, in the same run; target >= 0.8 (issue 17). Kept short (the machine is shared): each
// side 3 times, interleaved, medians; zstd (the default) and, as context, --compress none
// (where the cipher's share of the time is largest). One encrypted output is verified
// with the key. Throughputs in MB/s of block data; every run ends with a sync.
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { cliJson, parseJsonOutput } from './cli.js';
import type { BenchContext } from './context.js';
import { interleave, median } from './measure.js';
import { measuredCli } from './peak-memory.js';
import { row, type BenchRow } from './result.js';
import { BASE, buildVolume, dumpArgs, settleFor, type DumpJson } from './dump-fixtures.js';

const ROUNDS = 3;
const BYTES = 512 * 2 ** 20;

export async function benchDumpEncrypt(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const vol = await ctx.once('encrypt-volume', () => buildVolume(ctx, 'encrypt.vol', BYTES, 4545));
  const key = path.join(ctx.work, 'bench.key');
  fs.writeFileSync(key, randomBytes(32).toString('hex'), { mode: 0o600 });
  const out = path.join(ctx.work, 'dump-encrypt.out');
  for (const codec of ['zstd', 'none'] as const) {
    const t = { plain: [] as number[], encrypted: [] as number[] };
    const size = { plain: 0, encrypted: 0 };
    let verified = false;
    const steps = interleave(['plain', 'encrypted'] as const, ROUNDS);
    for (const [i, step] of steps.entries()) {
      fs.rmSync(out, { force: true });
      await settleFor(ctx, [vol.path], []);
      const extra = ['--compress', codec, ...(step === 'encrypted' ? ['--encrypt', '--key-file', key] : [])];
      const m = measuredCli(ctx, dumpArgs(vol, 0, BASE, out, extra), out);
      const r = parseJsonOutput<DumpJson>(m.stdout);
      if (r.blocks !== vol.base.blocks || r.streamBytes !== fs.statSync(out).size) throw new Error(`dump ${step}: ${r.blocks} blocks, ${r.streamBytes} bytes; expected ${vol.base.blocks} blocks`);
      if (step === 'encrypted' && !verified) {
        const v = cliJson<{ streams: Array<{ blocks: number }> }>(['verify', out, '--key-file', key]);
        if (v.streams[0]?.blocks !== r.blocks) throw new Error(`verify of the encrypted dump read ${JSON.stringify(v.streams)}`);
        verified = true;
      }
      t[step].push(r.bytes / 1e6 / m.seconds);
      size[step] = r.streamBytes;
      ctx.log(`dump-encrypt (${codec}) ${i + 1}/${steps.length}: ${step} ${t[step].at(-1)!.toFixed(0)} MB/s`);
    }
    fs.rmSync(out, { force: true });
    const name = codec === 'zstd' ? 'dump-encrypt' : 'dump-encrypt-none';
    const what = `imgstream dump --level 0 --compress ${codec} --encrypt --key-file of a 512 MiB volume to a file, + sync, vs the same dump without --encrypt; MB/s of blocks, median of ${ROUNDS} each; streams ${(size.encrypted / 1e6).toFixed(1)} MB vs ${(size.plain / 1e6).toFixed(1)} MB`;
    record(row(name, what, 'MB/s', { measured: t.encrypted, baseline: t.plain }, median(t.encrypted), median(t.plain), codec === 'zstd' ? { on: 'ratio', op: '>=', value: 0.8 } : null));
  }
}
