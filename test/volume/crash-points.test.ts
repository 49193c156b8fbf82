// A real CLI process killed (SIGKILL) at each step of a consistency point and of a
// snapshot (create, delete, made a shadow one): the volume must open, check clean, and hold
// the old state (killed before the root record) or the new one (after it), and accept the
// next write.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomImage, tempDir, mutate } from '../support/images.js';
import { checkReportOf, imageSha, snapshotNamesOf } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BIN = path.resolve('dist/commands/_cli/bin.js');
const dir = tempDir('imgstream-crash-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function cli(args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { ...process.env, ...env }, timeout: 60_000 });
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
}
const sha = (f: string) => createHash('sha256').update(fs.readFileSync(f)).digest('hex');

const BS = 4096;
const BLOCKS = 2048;

async function setup(name: string) {
  const vol = path.join(dir, `${name}.vol`);
  const a = path.join(dir, `${name}.a.raw`);
  const b = path.join(dir, `${name}.b.raw`);
  const img = randomImage(BLOCKS, BS, 7);
  fs.writeFileSync(a, img);
  mutate(img, BS, 300, 8);
  fs.writeFileSync(b, img);
  await setupOk(['volume', 'create', vol, '--size', String(BLOCKS * BS)]);
  await setupOk(['volume', 'import', vol, '--from', a]);
  await setupOk(['snapshot', 'create', vol, 'base']);
  return { vol, a, b };
}

/** sha256 of the disk at REF (VOL or VOL@SNAPSHOT), read here as `volume export` reads it (oracle.ts). */
const exported = (vol: string, ref = vol): Promise<string> => imageSha(ref);

async function expectClean(vol: string): Promise<void> {
  const r = await checkReportOf(vol);
  expect(r.ok, JSON.stringify(r.problems)).toBe(true);
}

describe('kill -9 at every step of a consistency point', () => {
  const cases: Array<[string, 'old' | 'new']> = [
    ['journal', 'old'],
    ['root', 'new'],
    ['apply', 'new'],
    ['clean-root', 'new'],
  ];
  for (const [step, expected] of cases) {
    it(`import killed at "${step}" leaves the ${expected} state`, async () => {
      const { vol, a, b } = await setup(`cp-${step}`);
      const r = cli(['volume', 'import', vol, '--from', b], { IMGSTREAM_CRASH_AT: step });
      expect(r.signal).toBe('SIGKILL');
      // a read-only open first (journal replayed in memory only), then a writer
      await expectClean(vol);
      expect(await exported(vol)).toBe(sha(expected === 'old' ? a : b));
      expect(cli(['snapshot', 'create', vol, 'after']).code).toBe(0);
      await expectClean(vol);
      expect(await exported(vol, `${vol}@after`)).toBe(sha(expected === 'old' ? a : b));
      expect(await exported(vol, `${vol}@base`)).toBe(sha(a));
      // and the volume keeps working: the other image goes in and comes out
      expect(cli(['volume', 'import', vol, '--from', expected === 'old' ? b : a]).code).toBe(0);
      expect(await exported(vol)).toBe(sha(expected === 'old' ? b : a));
      await expectClean(vol);
    });
  }

  it('snapshot create killed after its plane copy leaves no snapshot, and the slot is reusable', async () => {
    const { vol, a, b } = await setup('snap');
    await setupOk(['volume', 'import', vol, '--from', b]);
    const r = cli(['snapshot', 'create', vol, 'half'], { IMGSTREAM_CRASH_AT: 'snapshot-plane' });
    expect(r.signal).toBe('SIGKILL');
    await expectClean(vol);
    expect(await snapshotNamesOf(vol)).toEqual(['base']);
    expect(cli(['snapshot', 'create', vol, 'half']).code).toBe(0);
    expect(await exported(vol, `${vol}@half`)).toBe(sha(b));
    expect(await exported(vol, `${vol}@base`)).toBe(sha(a));
    await expectClean(vol);
  });

  for (const [step, expected] of [['journal', 'old'], ['root', 'new'], ['apply', 'new']] as const) {
    it(`snapshot shadow killed at "${step}" leaves the snapshot ${expected === 'old' ? 'regular (the state before)' : 'a shadow one (the state after)'}`, async () => {
      const { vol, a } = await setup(`shadow-${step}`);
      const r = cli(['snapshot', 'shadow', vol, 'base'], { IMGSTREAM_CRASH_AT: step });
      expect(r.signal).toBe('SIGKILL');
      await expectClean(vol);
      const list = JSON.parse(cli(['snapshot', 'list', vol, '--json']).stdout).snapshots as Array<{ name: string; shadow: boolean; reusedBlocks: number }>;
      expect(list).toMatchObject([{ name: 'base', shadow: expected === 'new', reusedBlocks: 0 }]);
      expect(await exported(vol, `${vol}@base`)).toBe(sha(a));
      expect(cli(['snapshot', 'shadow', vol, 'base']).code).toBe(0);
      await expectClean(vol);
    });
  }

  it('snapshot delete killed at "root" completes on the next open', async () => {
    const { vol } = await setup('del');
    const r = cli(['snapshot', 'delete', vol, 'base'], { IMGSTREAM_CRASH_AT: 'root' });
    expect(r.signal).toBe('SIGKILL');
    await expectClean(vol);
    expect(await snapshotNamesOf(vol)).toEqual([]);
  });
});
