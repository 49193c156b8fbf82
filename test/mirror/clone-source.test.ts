// A copy of the source volume file (a cloned VM disk: the same uuid, so the same
// relationship key) mirrored to the same destination. The original's planes track only
// what it allocated since its own last transfer: after the copy's update the destination
// is at the copy's state, and an update of the original that shipped its marked blocks
// (moa mode) corrupted the mirror (blocks referenced twice) with exit 0. Now the moa mode
// needs the destination at the state this very file sent last; otherwise the update
// compares the snapshots both sides hold, and the mirror is exact after every update.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, writeImage } from '../support/cli.js';
import { mutate, tempDir } from '../support/images.js';
import { checkReportOf, imageSha, snapshotNamesOf } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 4096; // 16 MiB
const root = tempDir('imgstream-mirror-clone-source-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const at = (f: string) => path.join(root, f);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function write(vol: string, img: Buffer, count: number, seed: number, snapshot?: string): Promise<void> {
  mutate(img, BS, count, seed);
  fs.writeFileSync(at('img'), img);
  await setupOk(['volume', 'import', vol, '--from', at('img')], { env });
  if (snapshot) await setupOk(['snapshot', 'create', vol, snapshot], { env });
}

const update = (vol: string, dest: string) => cliJson<{ mode: string }>(['mirror', 'update', vol, '--to', dest, '--json'], { env, timeoutMs: 120_000 });

/** Every snapshot of `src` and its active disk are on `dest`, byte for byte, and it checks clean. */
async function expectExact(src: string, dest: string, what: string): Promise<void> {
  for (const s of await snapshotNamesOf(src, env)) expect(await imageSha(`${dest}@${s}`, env), `${what}: ${s}`).toBe(await imageSha(`${src}@${s}`, env));
  expect(await imageSha(dest, env), `${what}: active`).toBe(await imageSha(src, env));
  const check = await checkReportOf(dest, env);
  expect(check.ok, `${what}: check`).toBe(true);
}

describe('a copy of the source volume file mirrored to the same destination', () => {
  it('the original updates after the copy did: not in moa mode, and the mirror is exact', async () => {
    const src = at('src.vol');
    const clone = at('clone.vol');
    const dest = at('dest.vol');
    const a = writeImage(at('img'), BLOCKS, BS, 3, 0.1);
    await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`], { env });
    await setupOk(['volume', 'import', src, '--from', at('img')], { env });
    expect(update(src, dest).mode).toBe('full');
    fs.copyFileSync(src, clone);
    const b = Buffer.from(a);

    await write(src, a, 300, 21, 's5');
    expect(update(src, dest).mode).toBe('moa');
    await expectExact(src, dest, 'the original');

    await write(clone, b, 300, 22, 's5');
    expect(update(clone, dest).mode).not.toBe('moa');
    await expectExact(clone, dest, 'the copy');

    await write(src, a, 50, 23);
    expect(update(src, dest).mode).not.toBe('moa');
    await expectExact(src, dest, 'the original again');

    // its own relationship again: the planes track it from here
    await write(src, a, 50, 24);
    expect(update(src, dest).mode).toBe('moa');
    await expectExact(src, dest, 'the original, next');
  });
});
