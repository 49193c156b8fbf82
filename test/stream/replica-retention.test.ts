// A replica kept by `restore --as-of` night after night while the source's retention
// deletes old snapshots (a helper found this): once the chain's level 0 snapshot was
// dropped on the replica (deleted on the source, dropped by the next restore), the next
// `--as-of` tried the level 0 again ("restores only into a new volume", exit 6). The
// chain's dumps up to the newest whose top the replica holds are skipped: the same
// --as-of again needs nothing (exit 0), and a later one applies only what is new.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, runCli } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { dump, exportShas, expectClean, snapshotNames } from '../support/stream-cli.js';

const BS = 4096;
const root = tempDir('imgstream-replica-retention-');
const catalog = path.join(root, 'catalog.json');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: catalog };
const o = { env, timeoutMs: 60_000 };
const p = (name: string) => path.join(root, name);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('a replica kept by restore --as-of under the source\'s retention', () => {
  it('skips the dumps up to the newest whose top it holds, even when the level 0\'s top was deleted since', async () => {
    const src = p('src.vol');
    const rep = p('rep.vol');
    await setupOk(['volume', 'create', src, '--size', '1M', '--max-snapshots', '8'], { env });
    const img = randomImage(256, BS, 5);
    const night = async (name: string, seed: number): Promise<void> => {
      mutate(img, BS, 40, seed);
      fs.writeFileSync(p('img.raw'), img);
      await setupOk(['volume', 'import', src, '--from', p('img.raw'), '-q'], { env });
      await setupOk(['snapshot', 'create', src, name, '-q'], { env });
    };
    type Restored = { streams: Array<{ top: string; dropped: string[] }> };
    const asOf = (snap: string) => runCli(['restore', '--to', rep, '--as-of', snap, '--json'], o);

    await night('mon', 1);
    dump(src, 0, 'mon', p('mon.l0'), catalog, [], o);
    expect(asOf('mon').code).toBe(0);
    await night('tue', 2);
    dump(src, 1, 'tue', p('tue.l1'), catalog, [], o);
    expect((JSON.parse(asOf('tue').stdout) as Restored).streams.map((s) => s.top)).toEqual(['tue']);
    // retention on the source: mon goes; the level 2 drops it on the replica
    await setupOk(['snapshot', 'delete', src, 'mon', '-q'], { env });
    await night('wed', 3);
    dump(src, 2, 'wed', p('wed.l2'), catalog, [], o);
    const wed = JSON.parse(asOf('wed').stdout) as Restored;
    expect(wed.streams.map((s) => [s.top, s.dropped])).toEqual([['wed', ['mon']]]);
    expect(await snapshotNames(rep, o)).toEqual(['tue', 'wed']);
    // the same again: nothing to do (its level 0's top is gone from the replica, and is not tried again)
    const again = runCli(['restore', '--to', rep, '--as-of', 'wed'], o);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toMatch(/holds wed already .*nothing to restore/);
    // the next night applies only its own dump
    await night('thu', 4);
    dump(src, 3, 'thu', p('thu.l3'), catalog, [], o);
    const thu = cliJson<Restored>(['restore', '--to', rep, '--as-of', 'thu', '--json'], o);
    expect(thu.streams.map((s) => s.top)).toEqual(['thu']);
    expect(await exportShas(rep, ['tue', 'wed', 'thu', null], o)).toEqual(await exportShas(src, ['tue', 'wed', 'thu', null], o));
    await expectClean(rep, o);
  });
});
