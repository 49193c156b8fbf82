// A plain tape (tape:DIR) holding the dumps of two volumes, as a shared tape library
// does: file0001 a's level 0, file0002 b's level 0, file0003 a's level 1. Each volume's
// current image's sha256 and its uuid are what a restore of its chain must give back.
import fs from 'node:fs';
import path from 'node:path';
import { cliOk, sha256File, writeImage } from './cli.js';
import { inProcessJson, inProcessOk, setupOk } from './in-process.js';

const BS = 4096;

export interface TwoVolumeTape {
  tape: string;
  digests: Record<'a' | 'b', string>;
  uuids: Record<'a' | 'b', string>;
}

/**
 * Makes the volumes a.vol and b.vol, and the tape `tape:ROOT/tape`, under `root`; image
 * contents from `seed`. The dumps run as processes, the setup and reads in this one.
 */
export async function makeTwoVolumeTape(root: string, env: Record<string, string>, seed: number): Promise<TwoVolumeTape> {
  const at = (f: string) => path.join(root, f);
  const o = { env, timeoutMs: 60_000 };
  const tape = `tape:${at('tape')}`;
  const digests = {} as Record<'a' | 'b', string>;
  const uuids = {} as Record<'a' | 'b', string>;
  fs.mkdirSync(at('tape'));
  for (const [i, v] of (['a', 'b'] as const).entries()) {
    await setupOk(['volume', 'create', at(`${v}.vol`), '--size', '1M', '-q'], o);
    writeImage(at(`${v}.img`), 256, BS, seed + i, 0.2);
    await setupOk(['volume', 'import', at(`${v}.vol`), '--from', at(`${v}.img`), '-q'], o);
    uuids[v] = (await inProcessJson<{ uuid: string }>(['volume', 'info', at(`${v}.vol`)], o)).uuid;
    await setupOk(['snapshot', 'create', at(`${v}.vol`), 'l0', '-q'], o);
    cliOk(['dump', at(`${v}.vol`), '--level', '0', '--snapshot', 'l0', '--to', tape, '-q'], o);
  }
  writeImage(at('a2.img'), 256, BS, seed + 9, 0.2);
  await setupOk(['volume', 'import', at('a.vol'), '--from', at('a2.img'), '-q'], o);
  await setupOk(['snapshot', 'create', at('a.vol'), 'l1', '-q'], o);
  cliOk(['dump', at('a.vol'), '--level', '1', '--snapshot', 'l1', '--to', tape, '-q'], o);
  for (const v of ['a', 'b'] as const) {
    await inProcessOk(['volume', 'export', at(`${v}.vol`), '--to', at(`${v}.now`), '-q'], o);
    digests[v] = sha256File(at(`${v}.now`));
  }
  return { tape, digests, uuids };
}
