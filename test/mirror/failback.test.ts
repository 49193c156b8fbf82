// Failback after a failover: the mirror broken off and written in the source's place while
// the source changed too. A resync onto the source is refused (it is no mirror), naming
// --reverse; with it the source becomes the failover volume's mirror, only the differences
// since their newest common snapshot moving, its own changes since dropped; broken off and
// resynced the other way, the pair is as it was before the failover, exact.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, sha256File } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { expectOneLineError, exportShas, refused } from '../support/stream-cli.js';

const root = tempDir('imgstream-failback-');
const at = (n: string) => path.join(root, n);
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_MIRROR_STATE: at('state.json') };
const o = { env, timeoutMs: 60_000 };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function write(vol: string, img: Buffer, seed: number): Promise<void> {
  mutate(img, 4096, 30, seed);
  fs.writeFileSync(at('img.raw'), img);
  await setupOk(['volume', 'import', vol, '--from', at('img.raw'), '-q'], { env });
}

const names = (vol: string) => cliJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol, '--json'], o).snapshots.map((x) => x.name);

describe('failback with mirror resync --reverse', () => {
  it('brings the failover volume\'s changes back onto the source, moving only the differences', async () => {
    const [v, m] = [at('v.vol'), at('m.vol')];
    await setupOk(['volume', 'create', v, '--size', '2M', '--max-snapshots', '8'], { env });
    const img = randomImage(512, 4096, 11);
    await write(v, img, 1);
    await setupOk(['snapshot', 'create', v, 'daily', '-q'], { env });
    cliOk(['mirror', 'update', v, '--to', m], o);
    // failover: the mirror is written in the source's place; the source changed as well (writes the failover loses)
    cliOk(['mirror', 'break', m], o);
    const failover = Buffer.from(img);
    await write(m, failover, 2);
    await setupOk(['snapshot', 'create', m, 'on-failover', '-q'], { env });
    await write(v, img, 3);
    await setupOk(['snapshot', 'create', v, 'lost', '-q'], { env });

    const sha = sha256File(v);
    const line = expectOneLineError(await refused(['mirror', 'resync', m, '--to', v], o), 'a resync onto a volume that is no mirror', 4, /v\.vol: holds a volume that is not a mirror/);
    expect(line).toContain(`imgstream mirror resync ${m} --to ${v} --reverse`);
    expect(sha256File(v)).toBe(sha);

    const back = cliJson<{ mode: string; blocks: number }>(['mirror', 'resync', m, '--to', v, '--reverse'], o);
    expect(back.mode).toBe('common');
    expect(back.blocks, 'the differences since "daily", not the disk').toBeLessThan(100);
    expect(names(v)).not.toContain('lost');
    expect(await exportShas(v, [null, 'daily', 'on-failover'], o)).toEqual(await exportShas(m, [null, 'daily', 'on-failover'], o));
    // a mirror now: written only by its mirror, until broken off
    expect((await refused(['volume', 'import', v, '--from', at('img.raw')], o)).code).toBe(4);

    // the pair as before the failover: the source writable, the other its mirror
    cliOk(['mirror', 'break', v], o);
    await write(v, failover, 4);
    cliOk(['mirror', 'resync', v, '--to', m], o);
    expect(await exportShas(m, [null, 'on-failover'], o)).toEqual(await exportShas(v, [null, 'on-failover'], o));
    expect(cliOk(['volume', 'check', v], o).stdout).toMatch(/clean/);
  }, 60_000);
});
