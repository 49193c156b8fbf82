// A volume created without --volume-size holds a rewrite of every block of its disk while
// no snapshot holds them (the old copy stays referenced until the CP that frees it), at
// every size down to one block; and the free count `volume info` gives and an import
// checks against is what a change may take (blocks held back for journals left out), so
// an import that does not fit is refused before it writes anything, even into blocks only
// shadow snapshots hold.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomImage, tempDir } from '../support/images.js';
import { inProcess, inProcessJson, inProcessOk, setupOk } from '../support/in-process.js';
import { sha256File } from '../support/cli.js';

const BS = 4096;
const root = tempDir('imgstream-default-size-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
const at = (n: string) => path.join(root, n);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function image(name: string, blocks: number, seed: number): string {
  fs.writeFileSync(at(name), randomImage(blocks, BS, seed, 0));
  return at(name);
}

describe('a volume of the default size', () => {
  it.each([1, 2, 5, 8, 1024, 4096])('of %i blocks takes one full import of new data after another', async (blocks) => {
    const vol = at(`d${blocks}.vol`);
    await setupOk(['volume', 'create', vol, '--size', `${blocks * BS}`], { env });
    for (let seed = 1; seed <= 3; seed++) await setupOk(['volume', 'import', vol, '--from', image(`d${blocks}-${seed}.raw`, blocks, blocks * 10 + seed)], { env });
    await inProcessOk(['volume', 'export', vol, '--to', at(`d${blocks}.out`)], { env });
    expect(fs.readFileSync(at(`d${blocks}.out`)).equals(fs.readFileSync(at(`d${blocks}-3.raw`)))).toBe(true);
  });

  it('gives free blocks a change may take, and refuses an import that needs more before writing into a shadow snapshot\'s blocks', async () => {
    const BLOCKS = 2048;
    const vol = at('tight.vol');
    await setupOk(['volume', 'create', vol, '--size', `${BLOCKS * BS}`, '--volume-size', `${3 * BLOCKS * BS / 2 + (1 << 20)}`], { env });
    const x = randomImage(BLOCKS, BS, 1, 0);
    const y = randomImage(BLOCKS, BS, 2, 0);
    const mix = (n: number, name: string) => {
      fs.writeFileSync(at(name), Buffer.concat([y.subarray(0, n * BS), x.subarray(n * BS)]));
      return at(name);
    };
    fs.writeFileSync(at('x.raw'), x);
    await setupOk(['volume', 'import', vol, '--from', at('x.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 'sx', '--shadow'], { env });
    const info = await inProcessJson<{ freeBlocks: number; reusableBlocks: number; heldBackBlocks: number }>(['volume', 'info', vol], { env });
    expect(info.heldBackBlocks).toBeGreaterThan(0);
    // a change of exactly what is free and reusable, less the map and the CP's own needs, never fits: one of a few blocks more than that is refused
    const tooMany = info.freeBlocks + info.reusableBlocks - 2;
    const before = sha256File(vol);
    const r = await inProcess(['volume', 'import', vol, '--from', mix(tooMany, 'too-many.raw')], { env });
    expect(r.code, r.stderr).toBe(8);
    expect(r.stderr).toMatch(/the import needs about \d+ blocks, \d+ are free/);
    expect(sha256File(vol)).toBe(before);
    await inProcessOk(['volume', 'export', `${vol}@sx`, '--to', at('sx.out')], { env });
    expect(fs.readFileSync(at('sx.out')).equals(x)).toBe(true);
    // what info calls free is taken: that many changed blocks, less the map's and the CP's share, fit
    await setupOk(['volume', 'import', vol, '--from', mix(info.freeBlocks - 16, 'fits.raw')], { env });
  });
});
