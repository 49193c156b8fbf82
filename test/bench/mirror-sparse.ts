// mirror-sparse-noop / mirror-sparse-l1: mirror updates of a large, mostly empty volume
// (a 4 TiB thin disk holding 4 MiB, as VM disks are) against the same on a 4 GiB volume
// holding the same 4 MiB: an update with nothing changed, and one after 1 MiB was
// rewritten. The cost must follow what the volume holds, not its size: at most 4x for
// 1024x the disk. What still follows the size is the first read of each plane (holes:
// a bit per VBN, 256 MiB per plane at 4 TiB), done once per plane per run: the metadata
// store remembers the blocks of zeros it found and passes skip them. Before, a dozen
// passes each read and allocated every plane block again (10.7 s for the no-op at 4 TiB).
// Median of 3 each, interleaved; the destination is checked clean after the runs.
import fs from 'node:fs';
import path from 'node:path';
import { cliCommand } from './cli.js';
import type { BenchContext } from './context.js';
import { interleave, median, run, seconds } from './measure.js';
import { row, type BenchRow } from './result.js';

const ROUNDS = 3;
const SIZES = { small: '4G', large: '4T' };
const MIB = 2 ** 20;

function imgstream(args: string[]): void {
  const [c, a] = cliCommand(args);
  run(c, a);
}

export async function benchMirrorSparse(ctx: BenchContext, record: (r: BenchRow) => void): Promise<void> {
  const data = path.join(ctx.work, 'mirror-sparse.raw');
  const buf = Buffer.alloc(4 * MIB);
  for (let i = 0; i < buf.length; i += 4) buf.writeUInt32LE((i * 2654435761) >>> 0, i);
  fs.writeFileSync(data, buf);
  const vols = { small: path.join(ctx.work, 'ms-small.vol'), large: path.join(ctx.work, 'ms-large.vol') };
  const mirrors = { small: path.join(ctx.work, 'ms-small.mirror'), large: path.join(ctx.work, 'ms-large.mirror') };
  for (const kind of ['small', 'large'] as const) {
    for (const f of [vols[kind], mirrors[kind]]) fs.rmSync(f, { force: true });
    imgstream(['volume', 'create', vols[kind], '--size', SIZES[kind], '--quiet']);
    imgstream(['volume', 'import', vols[kind], '--from', data, '--quiet']);
    imgstream(['mirror', 'update', vols[kind], '--to', mirrors[kind], '--quiet']); // the full transfer
  }
  ctx.log('mirror-sparse: volumes and mirrors made');
  const t = { noopSmall: [] as number[], noopLarge: [] as number[], l1Small: [] as number[], l1Large: [] as number[] };
  const patch = path.join(ctx.work, 'mirror-sparse-1m.raw');
  for (const [i, kind] of interleave(['small', 'large'] as const, ROUNDS).entries()) {
    const [c, a] = cliCommand(['mirror', 'update', vols[kind], '--to', mirrors[kind], '--quiet']);
    (kind === 'small' ? t.noopSmall : t.noopLarge).push(seconds(() => run(c, a)));
    // 1 MiB rewritten (another pattern each round), then an update that carries it
    fs.writeFileSync(patch, Buffer.alloc(MIB, 1 + i));
    const [ci, ai] = cliCommand(['volume', 'import', vols[kind], '--from', patch, '--quiet']);
    run(ci, ai);
    (kind === 'small' ? t.l1Small : t.l1Large).push(seconds(() => run(c, a)));
    ctx.log(`mirror-sparse ${i + 1}/${2 * ROUNDS}: ${kind} no-op ${(kind === 'small' ? t.noopSmall : t.noopLarge).at(-1)!.toFixed(2)} s, 1 MiB ${(kind === 'small' ? t.l1Small : t.l1Large).at(-1)!.toFixed(2)} s`);
  }
  for (const kind of ['small', 'large'] as const) imgstream(['volume', 'check', mirrors[kind], '--quiet']);
  for (const f of [...Object.values(vols), ...Object.values(mirrors), data, patch]) fs.rmSync(f, { force: true });
  const what = `of a 4 TiB volume holding 4 MiB vs of a 4 GiB volume holding the same, to a mirror on this machine; seconds, median of ${ROUNDS} each`;
  record(row('mirror-sparse-noop', `mirror update with nothing changed ${what}`, 's', { measured: t.noopLarge, baseline: t.noopSmall }, median(t.noopLarge), median(t.noopSmall), { on: 'ratio', op: '<=', value: 4 }));
  record(row('mirror-sparse-l1', `mirror update after 1 MiB was rewritten ${what}`, 's', { measured: t.l1Large, baseline: t.l1Small }, median(t.l1Large), median(t.l1Small), { on: 'ratio', op: '<=', value: 4 }));
}
