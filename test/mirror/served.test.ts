// Mirror updates of a volume while `imgstream serve nbd` serves it and qemu-io writes to
// it: the server takes the transfer's snapshot and swaps the planes in one CP (a control
// op), the sender reads the pinned snapshots through a view, and every update leaves the
// mirror an exact replica of the source's snapshots, the newest mirror snapshot included.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomImage, rng, tempDir } from '../support/images.js';
import { missingBinaries, qemuIo, startServer } from '../nbd/support.js';
import { sha256 } from '../support/cli.js';
import { inProcessJson, inProcessOk, setupOk } from '../support/in-process.js';

const missing = missingBinaries(['qemu-io']);
const BS = 4096;
const SIZE = 16 << 20;
const root = tempDir('imgstream-mirror-served-');
const locks = path.join(root, 'locks');
const at = (f: string) => path.join(root, f);
const env = { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_MIRROR_STATE: at('mirrors.json') };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function imgstream(args: string[]) {
  const { run, CLI_BIN } = await import('../nbd/support.js');
  const r = await run(process.execPath, [CLI_BIN, ...args], { env });
  if (r.code !== 0) throw new Error(`imgstream ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r;
}

/** sha256 of `volume export REF` (a check run here, not as a process: through the server when it serves REF's volume). */
async function exportHash(ref: string, file: string): Promise<string> {
  fs.rmSync(at(file), { force: true });
  await inProcessOk(['volume', 'export', ref, '--to', at(file)], { env });
  return sha256(fs.readFileSync(at(file)));
}

/** The names of VOL's snapshots (`snapshot list`, a check run here). */
async function snapshotNames(vol: string): Promise<string[]> {
  return (await inProcessJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol], { env })).snapshots.map((s) => s.name);
}

describe.skipIf(missing.length > 0)('mirror update while the volume is served', () => {
  it('keeps the mirror an exact replica while a client writes', async () => {
    const vol = at('v.vol');
    const dest = at('m.vol');
    fs.writeFileSync(at('image.raw'), randomImage(SIZE / BS, BS, 9, 0.3));
    await setupOk(['volume', 'create', vol, '--size', String(SIZE), '--volume-size', '256M'], { env: { IMGSTREAM_LOCK_DIR: locks } });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('v.sock'), '--cp-interval', '0.2'], locks);
    const random = rng(3);
    try {
      const modes: string[] = [];
      for (let round = 0; round < 4; round++) {
        const cmds: string[] = [];
        for (let i = 0; i < 20; i++) cmds.push(`write -P 0x${(1 + Math.floor(random() * 254)).toString(16)} ${Math.floor(random() * (SIZE - 70000))} 65536`);
        // writes land while the update runs, too
        const writing = qemuIo(server.info.uri, cmds, ['-t', 'writeback']);
        const r = JSON.parse((await imgstream(['mirror', 'update', vol, '--to', dest, '--json'])).stdout);
        await writing;
        modes.push(r.mode);
        // every snapshot of the source (through the server) is the same on the mirror
        const list = await snapshotNames(vol);
        expect(list).toContain(r.top);
        for (const s of list) expect(await exportHash(`${dest}@${s}`, 'm.raw'), `round ${round}: ${s}`).toBe(await exportHash(`${vol}@${s}`, 's.raw'));
        if (round === 1) await setupOk(['snapshot', 'create', vol, 'user1'], { env });
      }
      expect(modes).toEqual(['full', 'moa', 'moa', 'moa']);
    } finally {
      await server.stop();
    }
    const check = await inProcessJson(['volume', 'check', vol], { env });
    expect(check.ok).toBe(true);
  });
});

describe('mirror update while a reader holds the previous mirror snapshot', () => {
  it('completes, and the previous snapshot goes once the reader lets go', async () => {
    const vol = at('p.vol');
    const dest = at('p-mirror.vol');
    await setupOk(['volume', 'create', vol, '--size', String(1 << 20)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('p.sock')], locks);
    const names = () => snapshotNames(vol);
    try {
      const first = JSON.parse((await imgstream(['mirror', 'update', vol, '--to', dest, '--json'])).stdout).top as string;
      // a reader of the previous mirror snapshot (as a dump of all snapshots, or an export)
      const reader = await startServer(vol, ['--snapshot', first], locks);
      const second = JSON.parse((await imgstream(['mirror', 'update', vol, '--to', dest, '--json'])).stdout).top as string;
      expect(await names()).toEqual([first, second]);
      await reader.stop();
      const deadline = Date.now() + 10_000;
      while ((await names()).includes(first) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(await names()).toEqual([second]);
      const third = JSON.parse((await imgstream(['mirror', 'update', vol, '--to', dest, '--json'])).stdout).top as string;
      expect(await names()).toEqual([third]);
    } finally {
      await server.stop();
    }
    expect((await inProcessJson(['volume', 'check', vol], { env })).ok).toBe(true);
  });
});

describe.skipIf(missing.length > 0)('mirror update while a reader holds a snapshot of a transfer that never completed', () => {
  it('does not drop it under the reader: it goes once the reader lets go', async () => {
    const vol = at('q.vol');
    const dest = at('q-mirror.vol');
    await setupOk(['volume', 'create', vol, '--size', String(1 << 20)], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const server = await startServer(vol, ['--socket', at('q.sock')], locks);
    const names = () => snapshotNames(vol);
    try {
      await qemuIo(server.info.uri, ['write -P 0x11 0 512k', 'flush']);
      const first = JSON.parse((await imgstream(['mirror', 'update', vol, '--to', dest, '--json'])).stdout).top as string;
      await qemuIo(server.info.uri, ['write -P 0x22 0 512k', 'flush']);
      // a transfer killed -9 once it took its snapshot, before the destination acknowledged
      // anything: the snapshot stays on the source, and the destination never had it
      const { spawnCli } = await import('../support/cli.js');
      const killed = spawnCli(['mirror', 'update', vol, '--to', dest, '--limit-rate', '1K'], { env });
      const deadline = Date.now() + 30_000;
      while ((await names()).length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      killed.kill('SIGKILL');
      await new Promise((r) => killed.once('close', r));
      const orphan = (await names()).find((n) => n !== first)!;
      expect(orphan).toMatch(/^mirror\./);
      // killed before the destination acknowledged anything: nothing to resume from
      expect(fs.existsSync(at('.q-mirror.vol.mirror-transfer')), 'killed before the first acknowledgement').toBe(false);
      const held = await exportHash(`${vol}@${orphan}`, 'orphan.raw');
      // a reader of that snapshot, then an update, which drops such snapshots
      const reader = await startServer(vol, ['--snapshot', orphan], locks);
      const third = JSON.parse((await imgstream(['mirror', 'update', vol, '--to', dest, '--json'])).stdout).top as string;
      expect(await names(), 'a pinned snapshot is never dropped').toContain(orphan);
      await qemuIo(server.info.uri, ['write -P 0x33 0 1M', 'flush']); // would reuse its blocks, were they free
      const { ok } = await import('../nbd/support.js');
      await ok('nbdcopy', [reader.info.uri, at('orphan-read.raw')]);
      expect(sha256(fs.readFileSync(at('orphan-read.raw'))), 'the reader still reads the snapshot').toBe(held);
      await reader.stop();
      const until = Date.now() + 10_000;
      while ((await names()).includes(orphan) && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      expect(await names()).toEqual([third]);
    } finally {
      await server.stop();
    }
    expect((await inProcessJson(['volume', 'check', vol], { env })).ok).toBe(true);
  });
});
