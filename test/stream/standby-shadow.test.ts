// A standby kept by applying every dump as it is taken (level 0, 1, 2, then a new level
// 1), through the CLI, when the source made the first level 1's top a shadow snapshot and
// reused its blocks before the new level 1: verify of the dumps in the order taken passes,
// and restore of the new level 1 onto the standby applies (its copy of that snapshot made
// a shadow one), every snapshot exact and the volume clean. Both refused it before (exit
// 4, "has snapshot taken after this stream's base").
import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/images.js';
import { inProcess, setupOk } from '../support/in-process.js';
import { runBundled } from '../support/bundled-cli.js';
import { exportSha } from '../support/stream-cli.js';

const root = tempDir('imgstream-standby-shadow-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const MiB = 1 << 20;
const cli = async (args: string[]): Promise<string> => {
  const r = await runBundled(args, { env });
  expect(r.code, `imgstream ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
};

describe('a standby that gets every dump as taken', () => {
  it('takes a new level 1 after a level 2 whose source made the first level 1\'s top a shadow snapshot and reused its blocks', async () => {
    const src = at('w.vol');
    const standby = at('standby.vol');
    const img = randomBytes(4 * MiB);
    const load = async () => {
      fs.writeFileSync(at('w.raw'), img);
      await setupOk(['volume', 'import', src, '--from', at('w.raw'), '-q'], { env });
    };
    await setupOk(['volume', 'create', src, '--size', '4M', '--volume-size', '9M', '-q'], { env }); // room for the disk twice: rewrites take shadow blocks
    await load();
    await setupOk(['snapshot', 'create', src, 's0', '-q'], { env });
    await cli(['dump', src, '--level', '0', '--snapshot', 's0', '--to', at('l0'), '-q']);
    await cli(['restore', '--from', at('l0'), '--to', standby, '-q']);
    for (const [s, level] of [['s1', 1], ['s2', 2]] as const) {
      randomBytes(MiB).copy(img, 0);
      await load();
      await setupOk(['snapshot', 'create', src, s, '-q'], { env });
      await cli(['dump', src, '--level', String(level), '--snapshot', s, '--to', at(`l${level}`), '-q']);
      await cli(['restore', '--from', at(`l${level}`), '--to', standby, '-q']);
    }
    // s1 a shadow one, its blocks taken by what the disk is rewritten with (the volume has no room otherwise)
    await cli(['snapshot', 'shadow', src, 's1']);
    for (let i = 0; i < 3; i++) {
      randomBytes(2 * MiB).copy(img, 0);
      fs.writeFileSync(at('w.raw'), img);
      // the later ones may find the volume full (exit 8): the first took s1's blocks already
      await inProcess(['volume', 'import', src, '--from', at('w.raw'), '-q'], { env });
    }
    const list = JSON.parse((await inProcess(['snapshot', 'list', src, '--json'], { env })).stdout) as { snapshots: Array<{ name: string; shadow: boolean; reusedBlocks: number }> };
    expect(list.snapshots.find((x) => x.name === 's1')!.reusedBlocks, 'precondition: blocks of the shadow s1 were reused').toBeGreaterThan(0);
    await setupOk(['snapshot', 'create', src, 's3', '-q'], { env });
    await cli(['dump', src, '--level', '1', '--snapshot', 's3', '--to', at('l1b'), '-q']);
    // the dumps in the order they were taken
    expect(await cli(['verify', at('l0'), at('l1'), at('l2'), at('l1b')])).toMatch(/4 stream\(s\) verified/);
    await cli(['restore', '--from', at('l1b'), '--to', standby, '-q']);
    const onStandby = JSON.parse((await inProcess(['snapshot', 'list', standby, '--json'], { env })).stdout) as { snapshots: Array<{ name: string; shadow: boolean }> };
    expect(onStandby.snapshots.map((x) => [x.name, x.shadow])).toEqual([['s0', false], ['s1', true], ['s2', false], ['s3', false]]);
    for (const s of ['s0', 's2', 's3']) expect(await exportSha(`${standby}@${s}`, { env }), s).toBe(await exportSha(`${src}@${s}`, { env }));
    expect(await exportSha(standby, { env })).toBe(await exportSha(`${src}@s3`, { env }));
    expect((await inProcess(['volume', 'check', standby], { env })).code).toBe(0);
  });
});
