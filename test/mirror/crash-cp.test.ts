// A mirror update killed in the destination's switching CP right after its root record
// (IMGSTREAM_CRASH_AT=root:NAME), before the journal is applied in place. That journal
// also holds data blocks: the ones the transfer staged because the old state still held
// their VBNs (the source freed and reused them). The destination is then at the new
// state: a read-only open (export, check) must see it so, data blocks included, before
// any writer replays the journal; and the next update goes on from there.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { exportSha, expectClean, ok, snapshotNames } from '../support/stream-cli.js';
import { runCli } from '../support/cli.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 1024; // 4 MiB: a small volume, so freed VBNs are soon reused
const root = tempDir('imgstream-mirror-crash-cp-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const o = { env, timeoutMs: 60_000 };
const p = (n: string) => path.join(root, n);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('mirror update killed in the destination CP after its root record', () => {
  it('a read-only open sees the new state, staged data blocks included; the next update goes on', async () => {
    const src = p('src.vol');
    const dest = p('dest.vol');
    // a volume barely larger than its disk: VBNs freed by one round are reused by the next
    await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 10}K`, '--volume-size', `${((BLOCKS * BS) >> 10) * 2}K`, '--max-snapshots', '8'], { env });
    const img = randomImage(BLOCKS, BS, 77, 0.05);
    fs.writeFileSync(p('img.raw'), img);
    await setupOk(['volume', 'import', src, '--from', p('img.raw'), '-q'], { env });
    ok(['mirror', 'update', src, '--to', dest, '-q'], o);
    for (let round = 0; round < 4; round++) {
      mutate(img, BS, 300, 78 + round);
      fs.writeFileSync(p('img.raw'), img);
      await setupOk(['volume', 'import', src, '--from', p('img.raw'), '-q'], { env });
      const r = runCli(['mirror', 'update', src, '--to', dest, '-q'], { ...o, env: { ...env, IMGSTREAM_CRASH_AT: 'root:dest.vol' } });
      expect(r.signal, `round ${round}: ${r.stderr}`).toBe('SIGKILL');
      // read-only first: the journal is not applied in place yet
      expect(await exportSha(dest, o), `round ${round}: the destination read-only`).toBe(await exportSha(src, o));
      await expectClean(dest, o);
      ok(['mirror', 'update', src, '--to', dest, '-q'], o);
      expect(await exportSha(dest, o)).toBe(await exportSha(src, o));
    }
    await expectClean(dest, o);
  }, 180_000);
});

// The source deleted a snapshot the mirror holds and reused its VBNs for a new disk: the
// blocks landing there are staged, and the mirror has too little room to journal them
// all. A CP of its own drops the deleted snapshot first, then they are written in place.
// Killed in that CP (before its root, after it, after its clean root), the destination is
// its previous state (the deleted snapshot gone or not), and the next update finishes.
describe('mirror update killed in the CP that drops the deleted snapshots first', () => {
  const N = 256;
  for (const step of ['journal', 'root', 'clean-root']) {
    it(`killed at ${step}: the previous state, then the next update finishes`, async () => {
      const dir = p(`drop-${step}`);
      fs.mkdirSync(dir);
      const e = { ...o, env: { ...env, IMGSTREAM_MIRROR_STATE: path.join(dir, 'mirrors.json') } };
      const src = path.join(dir, 'src.vol');
      const dest = path.join(dir, 'dest.vol');
      const raw = path.join(dir, 'img.raw');
      // room for two and a half disks: a second disk fills what the deleted first one held
      await setupOk(['volume', 'create', src, '--size', `${(N * BS) >> 10}K`, '--volume-size', `${((N * BS) >> 10) * 2.5}K`, '--max-snapshots', '8'], { env: e.env });
      for (const [k, seed] of [81, 82, 83].entries()) {
        fs.writeFileSync(raw, randomImage(N, BS, seed, 0));
        await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env: e.env });
        if (k === 0) await setupOk(['snapshot', 'create', src, 's0'], { env: e.env });
        if (k === 1) ok(['mirror', 'update', src, '--to', dest, '-q'], e);
        if (k === 1) await setupOk(['snapshot', 'delete', src, 's0'], { env: e.env });
      }
      const before = await exportSha(dest, e);
      const r = runCli(['mirror', 'update', src, '--to', dest, '-q'], { ...e, env: { ...e.env, IMGSTREAM_CRASH_AT: `${step}:dest.vol` } });
      expect(r.signal, r.stderr).toBe('SIGKILL');
      expect(await exportSha(dest, e)).toBe(before);
      await expectClean(dest, e);
      const names = await snapshotNames(dest, e);
      expect(names.includes('s0')).toBe(step === 'journal');
      // it resumes the transfer (all of it arrived), then one more brings the mirror to now
      const done = JSON.parse(ok(['mirror', 'update', src, '--to', dest, '--json'], e).stdout) as { transfers: Array<{ resumedRecords: number }> };
      expect(done.transfers.map((t) => t.resumedRecords > 0)).toEqual([true, false]);
      expect(await exportSha(dest, e)).toBe(await exportSha(src, e));
      const users = async (vol: string) => (await snapshotNames(vol, e)).filter((n) => !n.startsWith('mirror.'));
      expect(await users(dest)).toEqual(await users(src));
      await expectClean(dest, e);
    }, 120_000);
  }
});
