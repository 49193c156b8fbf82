// An import into a volume on a file system that fills up (a small tmpfs: needs root, as
// CI's machines run tests) fails with exit 10 and leaves the volume as it was; the blocks
// it wrote go back to the file system (fallocate's punch-hole), so the volume takes
// writes again at once: before, it kept their space and every later write failed too.
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { allocatedBytes, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { inProcess, inProcessOk, setupOk } from '../support/in-process.js';
import { imageSha } from '../support/oracle.js';

const BS = 4096;
const root = tempDir('imgstream-full-fs-import-');
const small = path.join(root, 'small');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
const at = (f: string) => path.join(root, f);

fs.mkdirSync(small, { recursive: true });
const canMount = process.getuid?.() === 0 && spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=24M', 'tmpfs', small]).status === 0;
const hasFallocate = spawnSync('fallocate', ['--version']).status === 0;
afterAll(() => {
  if (canMount) spawnSync('umount', [small]);
  fs.rmSync(root, { recursive: true, force: true });
});

describe.runIf(canMount && hasFallocate)('an import into a volume on a file system that fills up', () => {
  it('fails with exit 10, leaves the volume as it was, and gives the space it wrote back', async () => {
    const vol = path.join(small, 'v.vol');
    await setupOk(['volume', 'create', vol, '--size', '32M'], { env });
    writeImage(at('base.raw'), 2048, BS, 1, 0); // 8 MiB
    await setupOk(['volume', 'import', vol, '--from', at('base.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 'base'], { env });
    const before = await imageSha(vol, env);
    const used = allocatedBytes(vol);
    writeImage(at('big.raw'), 7680, BS, 2, 0); // 30 MiB: more than the file system has left
    const r = await inProcess(['volume', 'import', vol, '--from', at('big.raw')], { env });
    expect(r.code, r.stderr).toBe(10);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(await imageSha(vol, env)).toBe(before);
    expect(allocatedBytes(vol)).toBeLessThan(used + (1 << 20));
    // the volume takes writes again: a snapshot, an import of a changed block
    await setupOk(['snapshot', 'create', vol, 's2'], { env });
    const changed = fs.readFileSync(at('base.raw'));
    changed[0] ^= 0xff;
    fs.writeFileSync(at('changed.raw'), changed);
    await setupOk(['volume', 'import', vol, '--from', at('changed.raw')], { env });
    await inProcessOk(['volume', 'check', vol], { env });
  });
});
