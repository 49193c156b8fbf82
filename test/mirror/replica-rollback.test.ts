// replicate pull never takes a replica back: when the source's newest master is older
// than a snapshot the replica holds (the master it pulled last deleted on the source with
// --force, or a mirror destination ahead of the masters), the pull is refused in one line
// (exit 4) and the replica stays as it was, byte for byte; a newer master then brings it
// forward as before, its data that of the source.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, runCli, sha256File } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { expectOneLineError, exportShas } from '../support/stream-cli.js';

const root = tempDir('imgstream-replica-rollback-');
const at = (n: string) => path.join(root, n);
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_MIRROR_STATE: at('state.json') };
const o = { env, timeoutMs: 60_000 };

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A source volume with its disk changed, then snapshot `name` taken (master when asked). */
function change(vol: string, img: Buffer, seed: number, name: string, master: boolean): void {
  mutate(img, 4096, 20, seed);
  fs.writeFileSync(at('img.raw'), img);
  cliOk(['volume', 'import', vol, '--from', at('img.raw'), '-q'], o);
  cliOk(['snapshot', 'create', vol, name, ...(master ? ['--master'] : []), '-q'], o);
}

describe('replicate pull never takes a replica back', () => {
  it('a replica newer than the source newest master is refused and left as it was', async () => {
    const src = at('src.vol');
    const rep = at('rep.vol');
    cliOk(['volume', 'create', src, '--size', '1M', '--max-snapshots', '8'], o);
    const img = randomImage(256, 4096, 5);
    change(src, img, 1, 'm1', true);
    change(src, img, 2, 'm2', true);
    cliOk(['replicate', 'pull', rep, '--from', src], o);
    cliOk(['snapshot', 'delete', src, 'm2', '--force'], o);
    const sha = sha256File(rep);
    const line = expectOneLineError(runCli(['replicate', 'pull', rep, '--from', src], o), 'pull to an older master', 4, /rep\.vol: holds snapshot "m2", newer than "m1", the source's newest master: a pull would take it back to "m1" and drop it/);
    expect(line).toMatch(/take a newer master on the source/);
    expect(sha256File(rep)).toBe(sha);
    expect(fs.readdirSync(root).filter((n) => n.startsWith('.rep.vol'))).toEqual([]);
    // a newer master brings it forward
    change(src, img, 3, 'm3', true);
    expect(cliJson<{ top: string }>(['replicate', 'pull', rep, '--from', src], o).top).toBe('m3');
    expect(await exportShas(rep, ['m3'], o)).toEqual(await exportShas(src, ['m3'], o));
  });

  it('a mirror destination ahead of the masters is refused too, and stays at its mirror state', async () => {
    const src = at('msrc.vol');
    const mir = at('mir.vol');
    cliOk(['volume', 'create', src, '--size', '1M', '--max-snapshots', '8'], o);
    const img = randomImage(256, 4096, 6);
    change(src, img, 4, 'm1', true);
    change(src, img, 5, 'later', false);
    cliOk(['mirror', 'update', src, '--to', mir], o);
    const sha = sha256File(mir);
    expectOneLineError(runCli(['replicate', 'pull', mir, '--from', src], o), 'pull onto a mirror', 4, /mir\.vol: holds snapshots? .*"later".*, newer than "m1", the source's newest master/);
    expect(sha256File(mir)).toBe(sha);
  });
});
