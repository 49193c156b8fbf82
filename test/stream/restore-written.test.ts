// An incremental restored onto a replica written to since its newest snapshot, through
// the built CLI. The stream's CP resets the active file system to the stream's top, so
// what was written is gone unless the restore refuses. It refused only when a block of
// the stream landed on a VBN the writes took: a quiet night's level 1 (no block changed)
// was applied, exit 0, and the writes were lost; so was a chain run again onto a replica
// at its level 0 and written to since (the level 0 passed over, the level 1 applied).
// Now each is refused before anything is written (exit 4, one line), the writes kept.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, sha256File } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { dirEntries, dump, exportShas, expectOneLineError, ok } from '../support/stream-cli.js';

const BS = 4096;
const root = tempDir('imgstream-restore-written-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 60_000 };
const p = (name: string) => path.join(root, name);
const l = { l0: p('l0'), l1: p('l1'), l2: p('l2') };
const from = (...streams: string[]) => streams.flatMap((s) => ['--from', s]);
let sha: Record<string, string> = {};
/** The replica's active file system after the writes made on it. */
let written: Buffer;

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  // s1 dumped at level 0; s2 taken on a quiet night (level 1: no block); s3 a few blocks later (level 2)
  const src = p('src.vol');
  await setupOk(['volume', 'create', src, '--size', '1M'], { env });
  const img = randomImage(256, BS, 800);
  fs.writeFileSync(p('src.raw'), img);
  await setupOk(['volume', 'import', src, '--from', p('src.raw'), '-q'], { env });
  await setupOk(['snapshot', 'create', src, 's1', '-q'], { env });
  dump(src, 0, 's1', l.l0, env.IMGSTREAM_CATALOG, [], o);
  await setupOk(['snapshot', 'create', src, 's2', '-q'], { env });
  expect(dump(src, 1, 's2', l.l1, env.IMGSTREAM_CATALOG, [], o).level).toBe(1);
  mutate(img, BS, 6, 801);
  fs.writeFileSync(p('src.raw'), img);
  await setupOk(['volume', 'import', src, '--from', p('src.raw'), '-q'], { env });
  await setupOk(['snapshot', 'create', src, 's3', '-q'], { env });
  dump(src, 2, 's3', l.l2, env.IMGSTREAM_CATALOG, [], o);
  sha = await exportShas(src, ['s1', 's2', 's3'], o);
  // the replica at s1, then a few blocks written to it
  ok(['restore', ...from(l.l0), '--to', p('at-l0.vol'), '-q'], o);
  fs.copyFileSync(p('at-l0.vol'), p('r.vol'));
  ok(['volume', 'export', p('r.vol'), '--to', p('r.raw'), '-q'], o);
  written = fs.readFileSync(p('r.raw'));
  mutate(written, BS, 3, 802);
  fs.writeFileSync(p('r.raw'), written);
  ok(['volume', 'import', p('r.vol'), '--from', p('r.raw'), '-q'], o);
}, 120_000);

/** A restore onto r.vol that must be refused (exit 4, one line) with r.vol unchanged and its writes still there. */
function refused(streams: string[], pattern: RegExp): void {
  const to = p('r.vol');
  const before = sha256File(to);
  const dirBefore = dirEntries(root);
  const r = runCli(['restore', ...from(...streams), '--to', to], o);
  expectOneLineError(r, `restore ${streams.map((s) => path.basename(s)).join(' ')} -> r.vol`, 4, pattern);
  expect(sha256File(to), 'r.vol changed').toBe(before);
  expect(dirEntries(root)).toEqual(dirBefore);
  ok(['volume', 'export', to, '--to', p('r.now'), '--force', '-q'], o);
  expect(fs.readFileSync(p('r.now')).equals(written), 'the writes made on r.vol').toBe(true);
}

const discard = /r\.vol changed since its newest snapshot "s1" \(written to, or a newer snapshot deleted\): the stream would discard that/;

describe('an incremental onto a replica written to since its newest snapshot', () => {
  it('a level 1 that brings no block (a quiet night): refused, the writes kept', () => {
    refused([l.l1], discard);
  });

  it('the chain run again (l0 passed over, l1 would go on from there): refused at l1, the writes kept', () => {
    refused([l.l0, l.l1], new RegExp(`l1: .*${discard.source}`));
    refused([l.l0, l.l1, l.l2], new RegExp(`l1: .*${discard.source}`));
  });

  it('the same chain onto the replica as its level 0 left it: applied', async () => {
    const to = p('at-l0.vol');
    ok(['restore', ...from(l.l0, l.l1, l.l2), '--to', to, '-q'], o);
    expect(await exportShas(to, [null, 's1', 's2', 's3'], o)).toEqual({ active: sha.s3, ...sha });
  });
});
