// Blocks taken from a shadow snapshot are overwritten in place before the CP that clears
// their bits. A change set that then fails (an import refused for want of room) or is
// killed must not leave the shadow counted as intact over blocks that changed: the root
// record marks it tainted before the first such write. Checked through the API (an
// import that runs out of room half way) and with real processes killed at random
// moments of an import that takes shadow blocks.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { importImage } from '../../src/volume/import.js';
import { exportImage } from '../../src/volume/export.js';
import { checkVolume } from '../../src/volume/check.js';
import { exportToBuffer, memorySource, randomImage, rng, tempDir } from '../support/images.js';
import { cliOk, finished, sleep, spawnCli, writeImage } from '../support/cli.js';
import { setupOk } from '../support/in-process.js';

const dir = tempDir('imgstream-shadow-taint-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const BS = 4096;

/** The shadow snapshot `sh` either exports exactly `image` or counts blocks reused: never intact and changed. */
async function expectHonest(file: string, image: Buffer): Promise<'intact' | 'reused'> {
  const vol = Volume.open(file, { write: false });
  try {
    const sh = vol.snapshot('sh');
    if (sh.reusedBlocks > 0) return 'reused';
    const now = await exportToBuffer((s) => exportImage(vol, 'sh', s));
    expect(now.equals(image), 'shadow snapshot "sh" counts no reused block, so it must read as it was taken').toBe(true);
    const rep = checkVolume(vol);
    expect([...rep.problems, ...rep.trees.flatMap((t) => t.problems)]).toEqual([]);
    return 'intact';
  } finally {
    vol.close();
  }
}

describe('shadow snapshots whose blocks a failed or killed change set took', () => {
  it('an import whose source fails half way, after it wrote over shadow blocks, leaves the shadow counted as reused, and a later CP keeps that', async () => {
    const blocks = 256;
    const file = path.join(dir, 'failed.vol');
    // room for two whole images and a little more: a third takes blocks of the shadow
    Volume.create(file, { size: blocks * BS, blockSize: BS, maxSnapshots: 8, volumeSize: Math.floor(blocks * 2.6) * BS });
    const A = randomImage(blocks, BS, 1, 0);
    const C = randomImage(blocks, BS, 3, 0);
    const D = randomImage(blocks, BS, 4, 0);
    const vol = Volume.open(file, { write: true });
    try {
      await importImage(vol, memorySource(A));
      vol.createSnapshot('sh', { shadow: true });
      await importImage(vol, memorySource(C));
      vol.createSnapshot('keep');
      // D read from a pipe that breaks at 90%: its first blocks went to free VBNs, later ones over the shadow's
      const broken = { name: 'pipe', rereadable: false, async *open() {
        for (let o = 0; o < D.length * 0.9; o += 64 * BS) yield D.subarray(o, o + 64 * BS);
        throw new Error('read error');
      } };
      await expect(importImage(vol, broken, undefined, { chunkBytes: 16 * BS })).rejects.toThrow(/read error/);
    } finally {
      vol.close();
    }
    expect(rootOf(file).taintedShadows.length, 'the root lists the shadow').toBe(1);
    expect(await expectHonest(file, A)).toBe('reused');
    // the next CP records it in the table and drops the list
    const again = Volume.open(file, { write: true });
    try {
      again.createSnapshot('later');
    } finally {
      again.close();
    }
    expect(rootOf(file).taintedShadows).toEqual([]);
    expect(await expectHonest(file, A)).toBe('reused');
  });

  it('kill -9 of imports that take shadow blocks, at random moments: the shadow reads as taken or counts reused blocks', async () => {
    const blocks = 2048; // 8 MiB disk
    const lockDir = path.join(dir, 'locks');
    fs.mkdirSync(lockDir, { recursive: true });
    const env = { IMGSTREAM_LOCK_DIR: lockDir };
    const imgA = path.join(dir, 'A.img');
    const imgB = path.join(dir, 'B.img');
    const imgC = path.join(dir, 'C.img');
    writeImage(imgC, blocks, BS, 13, 0);
    const A = writeImage(imgA, blocks, BS, 11, 0);
    writeImage(imgB, blocks, BS, 12, 0);
    const random = rng(0x5eed);
    const outcomes = { intact: 0, reused: 0, killedAfterShadow: 0 };
    // how long a whole import takes here, so kills spread over it
    const probe = path.join(dir, 'probe.vol');
    const setup = async (file: string) => {
      fs.rmSync(file, { force: true });
      await setupOk(['volume', 'create', file, '--size', '8M', '--volume-size', '22M', '--max-snapshots', '4'], { env });
      await setupOk(['volume', 'import', file, '--from', imgA], { env });
      await setupOk(['snapshot', 'create', file, 'sh', '--shadow'], { env });
      await setupOk(['volume', 'import', file, '--from', imgC], { env }); // the shadow alone holds A now
    };
    await setup(probe);
    const t0 = performance.now();
    cliOk(['volume', 'import', probe, '--from', imgB], { env });
    const full = performance.now() - t0;
    expect(await expectHonest(probe, A), 'the import took blocks of the shadow').toBe('reused');
    for (let i = 0; i < 5; i++) {
      const file = path.join(dir, `k${i}.vol`);
      await setup(file);
      const child = spawnCli(['volume', 'import', file, '--from', imgB, '-q'], { env });
      const done = finished(child, 60_000);
      await sleep(full * (0.3 + 0.7 * random()));
      child.kill('SIGKILL');
      const r = await done;
      const outcome = await expectHonest(file, A);
      outcomes[outcome]++;
      if (r.signal === 'SIGKILL' && outcome === 'reused') outcomes.killedAfterShadow++;
      fs.rmSync(file, { force: true });
    }
    expect(outcomes.intact + outcomes.reused).toBe(5);
    // and a kill exactly when every block is written, over the shadow's too, and the CP's journal, before its root
    const file = path.join(dir, 'crash.vol');
    await setup(file);
    const child = spawnCli(['volume', 'import', file, '--from', imgB, '-q'], { env: { ...env, IMGSTREAM_CRASH_AT: 'journal' } });
    expect((await finished(child, 60_000)).signal).toBe('SIGKILL');
    expect(await expectHonest(file, A)).toBe('reused');
  }, 120_000);
});

function rootOf(file: string): import('../../src/format/volume-root.js').RootRecord {
  const vol = Volume.open(file, { write: false });
  try {
    return vol.rootRecord;
  } finally {
    vol.close();
  }
}
