// Snapshot names in rotation, as rsnapshot and zfs-auto-snapshot keep them: each night
// the oldest, daily.1, is deleted, daily.0 becomes daily.1, and a new daily.0 is taken and
// dumped one level up from the night before. The streams' source renamed their
// bases after dumping them: a restore gives the volume's snapshots the names the source
// holds (they are known by identity), so the chain restores into a new volume (by files
// and by --as-of), and a replica that gets each night's dump as it is taken (by file, or
// by --as-of from the catalog, which names the tops as they were dumped) follows,
// byte for byte, its snapshots named as the source's. (A restore refused the new daily.0:
// "already has another snapshot named daily.0", exit 6.)
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { dump, exportShas, ok } from '../support/stream-cli.js';

const root = tempDir('imgstream-rotation-');
const at = (n: string) => path.join(root, n);
const catalog = at('catalog.json');
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_CATALOG: catalog };
const o = { env, timeoutMs: 60_000 };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const names = (vol: string) => cliJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol, '--json'], o).snapshots.map((x) => x.name).sort();

describe('restore across snapshot names in rotation', () => {
  it('restores every night of a rotation into a new volume, and a replica that gets each night as it is taken', async () => {
    const v = at('v.vol');
    const rep = at('rep.vol');
    await setupOk(['volume', 'create', v, '--size', '1M', '--max-snapshots', '6'], { env });
    const img = randomImage(256, 4096, 21);
    const files: string[] = [];
    for (let night = 0; night < 4; night++) {
      if (night >= 2) await setupOk(['snapshot', 'delete', v, 'daily.1', '-q'], { env });
      if (night >= 1) ok(['snapshot', 'rename', v, 'daily.0', 'daily.1', '-q'], o);
      mutate(img, 4096, 12, 100 + night);
      fs.writeFileSync(at('img.raw'), img);
      await setupOk(['volume', 'import', v, '--from', at('img.raw'), '-q'], { env });
      await setupOk(['snapshot', 'create', v, 'daily.0', '-q'], { env });
      const file = at(`n${night}.l${night}`);
      dump(v, night, 'daily.0', file, catalog, [], o);
      files.push(file);
      const want = await exportShas(v, ['daily.0', ...(night >= 1 ? ['daily.1'] : [])], o);
      // the replica, each night's stream as it is taken
      ok(['restore', '--from', file, '--to', rep], o);
      expect(names(rep), `night ${night}: the replica's snapshots are named as the source's`).toEqual(names(v));
      expect(await exportShas(rep, Object.keys(want), o)).toEqual(want);
      // the chain into a new volume: its files, and --as-of from the catalog
      const chain = [...files];
      ok(['restore', ...chain.flatMap((f) => ['--from', f]), '--to', at(`new${night}.vol`)], o);
      expect(await exportShas(at(`new${night}.vol`), Object.keys(want), o)).toEqual(want);
      ok(['restore', '--as-of', 'daily.0', '--volume', v, '--to', at(`asof${night}.vol`)], o);
      expect(await exportShas(at(`asof${night}.vol`), ['daily.0'], o)).toEqual({ 'daily.0': want['daily.0'] });
      // a second replica fed by --as-of each night: the catalog names the tops as dumped, the replica holds them renamed since
      const step = cliJson<{ streams: Array<{ stream: string }> }>(['restore', '--as-of', 'daily.0', '--volume', v, '--to', at('rep2.vol')], o);
      expect(step.streams.map((x) => x.stream), `night ${night}: only that night's stream`).toEqual([`file ${file}`]);
      expect(await exportShas(at('rep2.vol'), Object.keys(want), o)).toEqual(want);
    }
    expect(ok(['volume', 'check', rep], o).stdout).toMatch(/clean/);
  }, 90_000);
});
