// Two restores into the same new path: the second is refused at once (busy, 7, naming the
// first), not after building the whole volume under its own temporary name only to fail
// at the final link with a hint that failed again (a helper found it). The first goes on.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { finished, runCli, spawnCli, stderrLines } from '../support/cli.js';
import { randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { dump, exportShas } from '../support/stream-cli.js';

const root = tempDir('imgstream-restore-same-path-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 60_000 };
const p = (name: string) => path.join(root, name);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('two restores into one new path', () => {
  it('the second is refused at once, busy, naming the first; the first completes', async () => {
    await setupOk(['volume', 'create', p('src.vol'), '--size', '4M'], { env });
    fs.writeFileSync(p('img.raw'), randomImage(1024, 4096, 3, 0));
    await setupOk(['volume', 'import', p('src.vol'), '--from', p('img.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', p('src.vol'), 's', '-q'], { env });
    dump(p('src.vol'), 0, 's', p('s.l0'), env.IMGSTREAM_CATALOG, ['--compress', 'none'], o);
    const stream = fs.readFileSync(p('s.l0'));
    // the first reads its stream from a pipe held open: it has begun the volume and waits for the rest
    const first = spawnCli(['restore', '--from', '-', '--to', p('new.vol')], { env, stdin: 'pipe' });
    const firstDone = finished(first, 60_000);
    first.stdin!.write(stream.subarray(0, 256 << 10));
    const deadline = Date.now() + 20_000;
    while (!fs.readdirSync(root).some((n) => n.startsWith('.new.vol.restoring-')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(fs.readdirSync(root).some((n) => n.startsWith('.new.vol.restoring-')), 'the first restore began the volume').toBe(true);
    const second = runCli(['restore', '--from', p('s.l0'), '--to', p('new.vol')], o);
    expect(second.code, second.stderr).toBe(7);
    expect(stderrLines(second)).toEqual([`imgstream: ${p('new.vol')}: a restore creating it is in progress (imgstream process ${first.pid}: restore) (wait for it to finish, or stop it)`]);
    first.stdin!.end(stream.subarray(256 << 10));
    const r = await firstDone;
    expect(r.code, r.stderr).toBe(0);
    expect(await exportShas(p('new.vol'), ['s'], o)).toEqual(await exportShas(p('src.vol'), ['s'], o));
    expect(fs.readdirSync(root).filter((n) => n.includes('restoring'))).toEqual([]);
  });
});
