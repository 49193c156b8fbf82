// Shadow snapshots as the CLI shows them (issue 18): an import from a file plans against
// the free blocks and the ones only shadow snapshots hold, as an import from stdin
// reuses them; `volume info` counts shadow-only blocks as reusable; `snapshot list`
// shows what a shadow snapshot holds after reuse.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, runCli } from '../support/cli.js';
import { randomImage, tempDir } from '../support/images.js';
import { inProcess, inProcessJson, inProcessOk, setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 64;
const root = tempDir('imgstream-shadow-cli-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
const o = { env, timeoutMs: 60_000 };
const p = (n: string) => path.join(root, n);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A volume with room for a bit more than two versions of its disk: version a in a shadow snapshot, version b active. */
async function twoVersions(name: string): Promise<{ vol: string; images: Buffer[] }> {
  const vol = p(`${name}.vol`);
  const volumeBytes = (BLOCKS * 2 + 24) * BS + 3 * BS * 10;
  await setupOk(['volume', 'create', vol, '--size', String(BLOCKS * BS), '--volume-size', String(volumeBytes), '--max-snapshots', '4', '-q'], { env });
  const images = [11, 12, 13].map((seed) => randomImage(BLOCKS, BS, seed, 0));
  images.forEach((img, i) => fs.writeFileSync(p(`${name}.${i}.raw`), img));
  await setupOk(['volume', 'import', vol, '--from', p(`${name}.0.raw`), '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 'shade', '--shadow', '-q'], { env });
  await setupOk(['volume', 'import', vol, '--from', p(`${name}.1.raw`), '-q'], { env });
  return { vol, images };
}

describe('shadow snapshots from the CLI', () => {
  it('volume info counts the blocks only shadow snapshots hold as reusable', async () => {
    const { vol } = await twoVersions('info');
    const info = cliJson(['volume', 'info', vol], o);
    expect(info.reusableBlocks).toBeGreaterThanOrEqual(BLOCKS); // version a (and its map block): no longer active, held by the shadow only
    expect(info.freeBlocks).toBeLessThan(BLOCKS);
    expect(runCli(['volume', 'info', vol], o).stdout).toMatch(/held only by shadow snapshots, reusable/);
  }, 60_000);

  it('an import from a file reuses shadow blocks as one from stdin does', async () => {
    for (const via of ['file', 'stdin'] as const) {
      const { vol } = await twoVersions(via);
      const third = p(`${via}.2.raw`);
      const r = via === 'file'
        ? runCli(['volume', 'import', vol, '--from', third, '-q'], o)
        : runCli(['volume', 'import', vol, '--from', '-', '-q'], { ...o, input: fs.readFileSync(third) });
      expect(r.code, `${via}: ${r.stderr}`).toBe(0);
      await inProcessOk(['volume', 'export', vol, '--to', p(`${via}.out.raw`), '-q'], { env });
      expect(fs.readFileSync(p(`${via}.out.raw`)).equals(fs.readFileSync(third))).toBe(true);
      // the shadow snapshot gave its blocks, and the listing says what it holds now (as a
      // process after the import from a file; the same listing after the one from stdin here)
      const [shade] = (via === 'file' ? cliJson(['snapshot', 'list', vol], o) : await inProcessJson(['snapshot', 'list', vol], { env })).snapshots;
      expect(shade.reusedBlocks).toBeGreaterThan(0);
      expect(shade.heldBlocks).toBe(shade.blocks - shade.reusedBlocks);
      const line = (via === 'file' ? runCli(['snapshot', 'list', vol], o) : await inProcess(['snapshot', 'list', vol], { env })).stdout.split('\n').find((l) => l.startsWith('shade'))!;
      expect(line.trim().split(/\s+/)[2]).toBe(String(shade.heldBlocks));
    }
  }, 60_000);
});
