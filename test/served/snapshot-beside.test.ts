// `serve nbd VOL --snapshot S` while VOL is served: the serving process adds a read-only
// export of S beside its own, S stays pinned while it is served, and the export goes
// away when the command stops, even killed with -9. A shadow snapshot served beside has
// no blocks of its own (the allocator may take them): once the server's writes take one,
// its export answers EIO, never other data.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { cli, CLI_BIN, missingBinaries, ok, qemuIo, run, startServer } from '../nbd/support.js';

const BS = 4096;
const SIZE = 4 << 20;
const missing = missingBinaries(['nbdcopy', 'nbdinfo', 'qemu-io']);
const root = tempDir('imgstream-served-beside-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe.skipIf(missing.length > 0)('a snapshot served beside the served volume', () => {
  it('is read-only, holds the snapshot, pins it, and goes away with the command (SIGTERM or kill -9)', async () => {
    const vol = at('v.vol');
    const image = randomImage(SIZE / BS, BS, 5, 0.3);
    fs.writeFileSync(at('image.raw'), image);
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    const main = await startServer(vol, ['--socket', at('v.sock')], locks);
    try {
      await cli(['snapshot', 'create', vol, 'mon'], locks);
      await qemuIo(main.info.uri, ['write -P 0x33 0 1M', 'flush']); // the active file system moves on
      const beside = await startServer(vol, ['--snapshot', 'mon'], locks);
      expect(beside.info.uri).toBe(`nbd+unix:///mon?socket=${at('v.sock')}`);
      expect(beside.info.readOnly).toBe(true);
      // the export holds the snapshot, not the active file system
      await ok('nbdcopy', [beside.info.uri, at('mon.raw')]);
      expect(fs.readFileSync(at('mon.raw')).equals(image)).toBe(true);
      const write = await run('qemu-io', ['-f', 'raw', beside.info.uri, '-c', 'write -P 1 0 4096']);
      expect(write.code === 0 && !/failed|can't open/i.test(write.stdout + write.stderr), 'the write is refused').toBe(false);
      // listed beside the main export; the snapshot cannot be deleted while served
      expect((await ok('nbdinfo', ['--list', main.info.uri])).stdout).toMatch(/export="mon"/);
      const del = await run(process.execPath, [CLI_BIN, 'snapshot', 'delete', vol, 'mon'], { env: { IMGSTREAM_LOCK_DIR: locks } });
      expect(del.code).not.toBe(0);
      expect(del.stderr).toMatch(/pinned/);
      // a second export of the same name is refused with one line
      const twice = await run(process.execPath, [CLI_BIN, 'serve', 'nbd', vol, '--snapshot', 'mon'], { env: { IMGSTREAM_LOCK_DIR: locks } });
      expect(twice.code).not.toBe(0);
      expect(twice.stderr.trim().split('\n')).toHaveLength(1);
      expect(twice.stderr).toMatch(/already served \(choose another --export-name\)/);
      // the empty name is the served volume's default export: not silently the snapshot's name
      const empty = await run(process.execPath, [CLI_BIN, 'serve', 'nbd', vol, '--snapshot', 'mon', '--export-name', ''], { env: { IMGSTREAM_LOCK_DIR: locks } });
      expect(empty.code).toBe(2);
      expect(empty.stderr.trim().split('\n')).toHaveLength(1);
      expect(empty.stderr).toMatch(/--export-name "" names the default export, which is the volume that imgstream process \d+ serves/);
      const stopped = await beside.stop();
      expect(stopped.stdout).toMatch(/"servedBy":\s*\d+/);
      await waitFor(async () => (await run('nbdinfo', [beside.info.uri])).code !== 0);

      // killed -9: the export and the pin go with its control connection
      const again = await startServer(vol, ['--snapshot', 'mon', '--export-name', 'monday'], locks);
      expect((await ok('nbdinfo', ['--size', again.info.uri])).stdout.trim()).toBe(String(SIZE));
      await again.kill9();
      await waitFor(async () => (await run('nbdinfo', [again.info.uri])).code !== 0);
      await cli(['snapshot', 'delete', vol, 'mon'], locks);
      // a missing snapshot: one line, the same code as on an idle volume
      const none = await run(process.execPath, [CLI_BIN, 'serve', 'nbd', vol, '--snapshot', 'nosuch'], { env: { IMGSTREAM_LOCK_DIR: locks } });
      expect(none.code).not.toBe(0);
      expect(none.stderr).toMatch(/no snapshot named "nosuch"/);
    } finally {
      await main.stop();
    }
  });
});

describe.skipIf(missing.length > 0)('a snapshot served beside a server that goes away', () => {
  it('exits 12 with one line when the serving process is killed (a supervisor sees the export is gone)', async () => {
    const vol = at('w.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    await setupOk(['snapshot', 'create', vol, 'tue'], { env });
    const main = await startServer(vol, ['--socket', at('w.sock')], locks);
    const beside = await startServer(vol, ['--snapshot', 'tue'], locks);
    const exited = new Promise<number | null>((resolve) => beside.child.once('exit', (code) => resolve(code)));
    await main.kill9();
    expect(await exited).toBe(12);
    const lines = beside.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^imgstream: .*w\.vol: imgstream process \d+, which served the snapshot export beside the volume, went away/);
  });
});

async function waitFor(cond: () => Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(missing.length > 0)('a shadow snapshot served beside, its blocks taken by writes', () => {
  it('reads exactly while whole; once writes reuse its blocks, its reads and block status get EIO (never other data), said once in the log', async () => {
    const vol = at('sh.vol');
    const n = (1 << 20) / BS;
    const [r1, r2, r3] = [11, 12, 13].map((seed) => randomImage(n, BS, seed, 0));
    await setupOk(['volume', 'create', vol, '--size', '1M', '--volume-size', '4M'], { env });
    for (const [i, img] of [r1, r2].entries()) {
      fs.writeFileSync(at(`sh${i}.raw`), img);
      await setupOk(['volume', 'import', vol, '--from', at(`sh${i}.raw`)], { env });
      await setupOk(['snapshot', 'create', vol, i === 0 ? 'S' : 'T'], { env });
      if (i === 0) await cli(['snapshot', 'shadow', vol, 'S'], locks);
    }
    const main = await startServer(vol, ['--socket', at('sh.sock')], locks);
    try {
      const beside = await startServer(vol, ['--snapshot', 'S'], locks);
      await ok('nbdcopy', [beside.info.uri, at('S-before.raw')]);
      expect(fs.readFileSync(at('S-before.raw')).equals(r1)).toBe(true);
      // the whole disk written again, and flushed: a 4 MiB volume holding T and the active disk has no room but S's blocks
      fs.writeFileSync(at('sh-r3.raw'), r3);
      await ok('nbdcopy', [at('sh-r3.raw'), main.info.uri]);
      await qemuIo(main.info.uri, ['flush']);
      const list = JSON.parse((await cli(['snapshot', 'list', vol, '--json'], locks)).stdout) as { snapshots: Array<{ name: string; reusedBlocks: number }> };
      expect(list.snapshots.find((x) => x.name === 'S')!.reusedBlocks, 'precondition: the writes took blocks of S').toBeGreaterThan(0);
      const after = await run('nbdcopy', [beside.info.uri, at('S-after.raw')]);
      expect(after.code, 'reading S once its blocks were taken').not.toBe(0);
      if (fs.existsSync(at('S-after.raw'))) {
        // whatever nbdcopy wrote before the error is never data other than S's: holes or r1
        const got = fs.readFileSync(at('S-after.raw'));
        for (let b = 0; b < n; b++) {
          const blk = got.subarray(b * BS, (b + 1) * BS);
          if (blk.length === 0 || blk.every((x) => x === 0)) continue;
          expect(blk.equals(r1.subarray(b * BS, (b + 1) * BS)), `block ${b} of S read after its blocks were taken`).toBe(true);
        }
      }
      expect((await run('nbdinfo', ['--map', beside.info.uri])).code).not.toBe(0);
      // the active disk reads exactly, and the log says why S fails, once
      await ok('nbdcopy', [main.info.uri, at('active.raw')]);
      expect(fs.readFileSync(at('active.raw')).equals(r3)).toBe(true);
      const said = main.stderr().split('\n').filter((l) => /shadow snapshot "S" had \d+ blocks reused by writes while served/.test(l));
      expect(said).toHaveLength(1);
      await beside.stop();
    } finally {
      await main.stop();
    }
  });

  it('an export of the active disk with every snapshot slot in use says it needs a temporary snapshot, and that a snapshot exports without one', async () => {
    const vol = at('slots.vol');
    await setupOk(['volume', 'create', vol, '--size', '1M', '--max-snapshots', '2'], { env });
    await setupOk(['snapshot', 'create', vol, 'a'], { env });
    await setupOk(['snapshot', 'create', vol, 'b'], { env });
    const main = await startServer(vol, ['--socket', at('slots.sock')], locks);
    try {
      const r = await run(process.execPath, [CLI_BIN, 'volume', 'export', vol, '--to', at('slots.raw')], { env: { IMGSTREAM_LOCK_DIR: locks } });
      expect(r.code).toBe(8);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/the export of a served volume's active disk reads a temporary snapshot of it, and all 2 snapshot slots are in use; .*or export a snapshot, which needs none: imgstream volume export \S+slots\.vol@SNAPSHOT$/m);
      expect(fs.existsSync(at('slots.raw'))).toBe(false);
      await cli(['volume', 'export', `${vol}@a`, '--to', at('slots-a.raw')], locks);
    } finally {
      await main.stop();
    }
  });
});
