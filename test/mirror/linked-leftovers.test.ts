// A first mirror transfer, and a restore into a new path, build the volume under a hidden
// name and link it into place, then remove the hidden name: a kill -9 between the two
// leaves the file with two names (found with strace by a helper's kill sweep). The next
// conversation with the destination removes the hidden name and the transfer's side files,
// never taking it for a transfer to finish: a mirror moved away (a failover volume) is
// not linked back and written over, a deleted one does not come back. The next restore
// onto the volume removes a killed restore's hidden name. The states are made here as the
// kill leaves them (a second hard link, the side files), then the commands run.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomImage, tempDir } from '../support/images.js';
import { inProcess, setupOk } from '../support/in-process.js';
import { runBundled } from '../support/bundled-cli.js';
import { exportSha } from '../support/stream-cli.js';

const root = tempDir('imgstream-linked-leftovers-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const ok = async (args: string[]): Promise<string> => {
  const r = await runBundled(args, { env });
  expect(r.code, `imgstream ${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
};
const hidden = (dir: string) => fs.readdirSync(dir).filter((n) => n.startsWith('.'));

async function source(name: string, seed: number): Promise<string> {
  const vol = at(name);
  await setupOk(['volume', 'create', vol, '--size', '2M', '-q'], { env });
  fs.writeFileSync(`${vol}.raw`, randomImage(512, 4096, seed));
  await setupOk(['volume', 'import', vol, '--from', `${vol}.raw`, '-q'], { env });
  await setupOk(['snapshot', 'create', vol, 's1', '-q'], { env });
  return vol;
}

/** The state a kill -9 leaves between a first transfer's link into place and the removal of its hidden name. */
function killedAfterLink(mirror: string): void {
  const dir = path.dirname(mirror);
  const base = `.${path.basename(mirror)}.`;
  fs.linkSync(mirror, path.join(dir, `${base}mirror-new`));
  fs.writeFileSync(path.join(dir, `${base}mirror-stage`), '');
  fs.writeFileSync(path.join(dir, `${base}mirror-transfer`), '{}');
}

describe('a hidden second name left by a kill between the link into place and its removal', () => {
  it('a mirror: the next update removes it and the side files; moved away as a failover volume, it is not linked back and written over', async () => {
    const src = await source('src.vol', 1);
    const dir = at('mirrors');
    fs.mkdirSync(dir);
    const mirror = path.join(dir, 'm.vol');
    await ok(['mirror', 'update', src, '--to', mirror]);
    killedAfterLink(mirror);
    expect(hidden(dir)).toHaveLength(3);
    await ok(['mirror', 'update', src, '--to', mirror]);
    expect(hidden(dir)).toEqual([]);
    expect(fs.statSync(mirror).nlink).toBe(1);

    // failover: the mirror is moved away, broken off and written to; the next update to the old name makes a new copy
    killedAfterLink(mirror);
    const failover = at('failover.vol');
    fs.renameSync(mirror, failover);
    await ok(['mirror', 'break', failover]);
    fs.writeFileSync(at('own.raw'), randomImage(512, 4096, 7));
    const imp = await inProcess(['volume', 'import', failover, '--from', at('own.raw'), '-q'], { env });
    expect(imp.code, imp.stderr).toBe(0);
    const before = await exportSha(failover, { env });
    const ino = fs.statSync(failover).ino;
    const r = await runBundled(['mirror', 'update', src, '--to', mirror], { env });
    expect(r.code, r.stderr).toBe(0);
    expect(fs.statSync(mirror).ino, 'a new copy, not the failover volume linked back').not.toBe(ino);
    expect(fs.statSync(failover).nlink).toBe(1);
    expect(await exportSha(failover, { env })).toBe(before);
    expect(await exportSha(mirror, { env })).toBe(await exportSha(`${src}@s1`, { env }));
    expect(hidden(dir)).toEqual([]);
  });

  it('a restore into a new path: the next restore onto the volume removes the killed one\'s hidden name', async () => {
    const src = await source('r-src.vol', 2);
    await ok(['dump', src, '--level', '0', '--snapshot', 's1', '--to', at('r.l0'), '-q']);
    fs.writeFileSync(`${src}.raw`, randomImage(512, 4096, 3));
    await setupOk(['volume', 'import', src, '--from', `${src}.raw`, '-q'], { env });
    await setupOk(['snapshot', 'create', src, 's2', '-q'], { env });
    await ok(['dump', src, '--level', '1', '--snapshot', 's2', '--to', at('r.l1'), '-q']);
    const dir = at('restored');
    fs.mkdirSync(dir);
    const vol = path.join(dir, 'n.vol');
    await ok(['restore', '--from', at('r.l0'), '--to', vol, '-q']);
    // a pid no process has (beyond pid_max)
    fs.linkSync(vol, path.join(dir, '.n.vol.restoring-99999999'));
    await ok(['restore', '--from', at('r.l1'), '--to', vol, '-q']);
    expect(hidden(dir)).toEqual([]);
    expect(fs.statSync(vol).nlink).toBe(1);
    expect(await exportSha(vol, { env })).toBe(await exportSha(`${src}@s2`, { env }));
  });
});
