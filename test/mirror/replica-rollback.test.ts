// replicate pull never takes a replica back: when the source's newest master is older
// than a snapshot the replica holds (the master it pulled last deleted on the source with
// --force, or a mirror destination ahead of the masters), the pull is refused in one line
// (exit 4) and the replica stays as it was, byte for byte; a newer master then brings it
// forward as before, its data that of the source. Through a peer daemon the refusal
// reaches the client as its error (it read "up to date ()", exit 0). A mirror update is
// held to the same: a mirror fed since from a volume further on (a cascade's hop bypassed
// while it was down) is not taken back when the hop comes back (it was, exit 0, its newest
// snapshots dropped).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_BIN, cliJson, cliOk, finished, listeningPort, runCli, sha256File } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { expectOneLineError, exportShas, refused } from '../support/stream-cli.js';
import { setupOk } from '../support/in-process.js';

const root = tempDir('imgstream-replica-rollback-');
const at = (n: string) => path.join(root, n);
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_MIRROR_STATE: at('state.json') };
const o = { env, timeoutMs: 60_000 };

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A source volume with its disk changed, then snapshot `name` taken (master when asked). */
async function change(vol: string, img: Buffer, seed: number, name: string, master: boolean): Promise<void> {
  mutate(img, 4096, 20, seed);
  fs.writeFileSync(at('img.raw'), img);
  await setupOk(['volume', 'import', vol, '--from', at('img.raw'), '-q'], { env });
  await setupOk(['snapshot', 'create', vol, name, ...(master ? ['--master'] : []), '-q'], { env });
}

describe('replicate pull never takes a replica back', () => {
  it('a replica newer than the source newest master is refused and left as it was', async () => {
    const src = at('src.vol');
    const rep = at('rep.vol');
    await setupOk(['volume', 'create', src, '--size', '1M', '--max-snapshots', '8'], { env });
    const img = randomImage(256, 4096, 5);
    await change(src, img, 1, 'm1', true);
    await change(src, img, 2, 'm2', true);
    cliOk(['replicate', 'pull', rep, '--from', src], o);
    await setupOk(['snapshot', 'delete', src, 'm2', '--force'], { env });
    const sha = sha256File(rep);
    const line = expectOneLineError(await refused(['replicate', 'pull', rep, '--from', src], o), 'pull to an older master', 4, /rep\.vol: holds snapshot "m2", newer than "m1", the source's newest master: a pull would take it back to "m1" and drop it/);
    expect(line).toMatch(/take a newer master on the source/);
    expect(sha256File(rep)).toBe(sha);
    expect(fs.readdirSync(root).filter((n) => n.startsWith('.rep.vol'))).toEqual([]);
    // a newer master brings it forward
    await change(src, img, 3, 'm3', true);
    expect(cliJson<{ top: string }>(['replicate', 'pull', rep, '--from', src], o).top).toBe('m3');
    expect(await exportShas(rep, ['m3'], o)).toEqual(await exportShas(src, ['m3'], o));
  });

  it('a mirror destination ahead of the masters is refused too, and stays at its mirror state', async () => {
    const src = at('msrc.vol');
    const mir = at('mir.vol');
    await setupOk(['volume', 'create', src, '--size', '1M', '--max-snapshots', '8'], { env });
    const img = randomImage(256, 4096, 6);
    await change(src, img, 4, 'm1', true);
    await change(src, img, 5, 'later', false);
    cliOk(['mirror', 'update', src, '--to', mir], o);
    const sha = sha256File(mir);
    expectOneLineError(await refused(['replicate', 'pull', mir, '--from', src], o), 'pull onto a mirror', 4, /mir\.vol: holds snapshots? .*"later".*, newer than "m1", the source's newest master/);
    expect(sha256File(mir)).toBe(sha);
  });

  it('a mirror update from a hop behind is refused, the mirror and the hop unchanged; the hop brought up to date goes on', async () => {
    const v = at('cv.vol');
    const [m1, m2] = [at('cm1.vol'), at('cm2.vol')];
    await setupOk(['volume', 'create', v, '--size', '1M', '--max-snapshots', '8'], { env });
    const img = randomImage(256, 4096, 8);
    await change(v, img, 8, 'first', false);
    cliOk(['mirror', 'update', v, '--to', m1], o);
    cliOk(['mirror', 'update', m1, '--to', m2], o);
    // m1 down: the source fed straight to m2
    await change(v, img, 9, 'newest', false);
    cliOk(['mirror', 'update', v, '--to', m2], o);
    const [sha2, names1] = [sha256File(m2), cliJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', m1, '--json'], o).snapshots.map((x) => x.name)];
    expectOneLineError(await refused(['mirror', 'update', m1, '--to', m2], o), 'a cascade hop behind its mirror', 4, /cm2\.vol: holds snapshots "newest", "mirror\.[0-9a-f]+\.\d+", newer than "mirror\.[0-9a-f]+\.\d+", the newest \S*cm1\.vol can send: .* this update would take it back and drop them/);
    expect(sha256File(m2)).toBe(sha2);
    expect(cliJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', m1, '--json'], o).snapshots.map((x) => x.name)).toEqual(names1);
    // as the hint says: m1 brought up to date, the cascade goes on, exact
    cliOk(['mirror', 'update', v, '--to', m1], o);
    cliOk(['mirror', 'update', m1, '--to', m2], o);
    expect(await exportShas(m2, ['newest', null], o)).toEqual(await exportShas(v, ['newest', null], o));
  });

  it('through a peer daemon, the refusal is the error of the pull command', async () => {
    const dir = at('peer-root');
    fs.mkdirSync(dir);
    fs.writeFileSync(at('token'), 'a token of enough bytes for the test\n', { mode: 0o600 });
    const src = path.join(dir, 'src.vol');
    await setupOk(['volume', 'create', src, '--size', '1M', '--max-snapshots', '8'], { env });
    const img = randomImage(256, 4096, 7);
    await change(src, img, 6, 'm1', true);
    await change(src, img, 7, 'm2', true);
    const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', '127.0.0.1:0', '--token-file', at('token'), '--plain', '--json'], { env: { ...process.env, ...env, NODE_ENV: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const done = finished(child, 120_000);
    try {
      const port = await listeningPort(child, done);
      const pull = ['replicate', 'pull', at('prep.vol'), '--from', `peer://127.0.0.1:${port}/src.vol`, '--token-file', at('token'), '--plain'];
      expect(cliJson<{ top: string }>(pull, o).top).toBe('m2');
      // nothing new: the master it is at is named (it said "up to date ()")
      expect(runCli(pull, o).stdout).toContain('prep.vol is up to date (m2)');
      cliOk(['snapshot', 'delete', src, 'm2', '--force'], o);
      const sha = sha256File(at('prep.vol'));
      expectOneLineError(await refused(pull, o), 'pull from a peer to an older master', 4, new RegExp(`^imgstream: peer://127\\.0\\.0\\.1:${port}/src\\.vol: replica prep\\.vol: holds snapshot "m2", newer than "m1", the source's newest master`));
      expect(sha256File(at('prep.vol'))).toBe(sha);
    } finally {
      child.kill('SIGTERM');
      await done;
    }
  });
});
