// A dump's top made a shadow snapshot (`snapshot shadow`, a bookmark): retention gets its
// blocks back, the allocator reuses them, and the next level still dumps, carrying what
// changed plus every reused block the top holds; the chain restores exactly into a new
// volume and onto a volume that holds the level 0 (where the blocks the source reused
// replace the base's, which becomes a shadow snapshot too). Through a server as well. A
// deleted base is still refused, its hint naming snapshot shadow. All from the CLI.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, nonZeroBlocks, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { inProcessJson } from '../support/in-process.js';
import { expectClean, expectOneLineError, refused } from '../support/stream-cli.js';
import { startServer } from '../nbd/support.js';

const root = tempDir('imgstream-shadow-base-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const BS = 4096;
const BLOCKS = 1024; // a 4 MiB disk
const at = (f: string) => path.join(root, f);

interface Snap {
  name: string;
  shadow: boolean;
  reusedBlocks: number;
}

async function snapshots(vol: string): Promise<Snap[]> {
  return (await inProcessJson(['snapshot', 'list', vol], { env })).snapshots as Snap[];
}

function exported(ref: string, file: string): Buffer {
  fs.rmSync(at(file), { force: true });
  cliOk(['volume', 'export', ref, '--to', at(file)], { env });
  return fs.readFileSync(at(file));
}

/**
 * A volume with room for about two and a half disks: s0 dumped at level 0 and made a
 * shadow snapshot, then two whole new disks (s1, then the active one) so the allocator
 * reuses s0's blocks. Returns the images.
 */
function reusedShadowBase(prefix: string): { vol: string; catalog: string; images: Buffer[] } {
  const vol = at(`${prefix}.vol`);
  const catalog = at(`${prefix}.catalog.json`);
  cliOk(['volume', 'create', vol, '--size', String(BLOCKS * BS), '--volume-size', String(Math.floor(BLOCKS * 2.5) * BS)], { env });
  const images = [1, 2, 3].map((seed) => writeImage(at(`${prefix}-${seed}.raw`), BLOCKS, BS, seed * 31 + prefix.length, 0.1));
  cliOk(['volume', 'import', vol, '--from', at(`${prefix}-1.raw`)], { env });
  cliOk(['snapshot', 'create', vol, 's0'], { env });
  cliOk(['dump', vol, '--level', '0', '--snapshot', 's0', '--to', at(`${prefix}.l0`), '--catalog', catalog], { env });
  const shadow = cliJson(['snapshot', 'shadow', vol, 's0', '--json'], { env });
  expect(shadow).toMatchObject({ name: 's0', shadow: true, reusedBlocks: 0 });
  cliOk(['volume', 'import', vol, '--from', at(`${prefix}-2.raw`)], { env });
  cliOk(['snapshot', 'create', vol, 's1'], { env });
  cliOk(['volume', 'import', vol, '--from', at(`${prefix}-3.raw`)], { env });
  return { vol, catalog, images };
}

async function expectChainRestored(r: string, images: Buffer[], top: string): Promise<void> {
  expect(exported(`${r}@s1`, 'check-s1.raw').equals(images[1]), 's1').toBe(true);
  expect(exported(`${r}@${top}`, 'check-top.raw').equals(images[2]), top).toBe(true);
  expect(exported(r, 'check-active.raw').equals(images[2]), 'active').toBe(true);
  const s0 = (await snapshots(r)).find((s) => s.name === 's0')!;
  expect(s0.shadow, 's0 is a shadow snapshot on the restored volume too').toBe(true);
  await expectClean(r, { env });
}

describe('a dump base made a shadow snapshot (snapshot shadow)', () => {
  it('has its blocks reused, and the next level still dumps and restores exactly, into a new volume and onto the level 0', async () => {
    const { vol, catalog, images } = reusedShadowBase('local');
    const s0 = (await snapshots(vol)).find((s) => s.name === 's0')!;
    expect(s0.reusedBlocks, 'the allocator took blocks of s0').toBeGreaterThan(0);
    cliOk(['snapshot', 'create', vol, 's2'], { env });
    const l1 = cliJson(['dump', vol, '--level', '1', '--snapshot', 's2', '--to', at('local.l1'), '--catalog', catalog, '--json'], { env });
    expect(l1).toMatchObject({ level: 1, base: 's0', top: 's2' });
    // what changed since s0 is two whole disks (s1 and s2), none of it left out for reusing s0's VBNs
    expect(l1.blocks).toBeGreaterThanOrEqual(nonZeroBlocks(images[1], BS) + nonZeroBlocks(images[2], BS));

    // the chain into a new volume
    cliOk(['restore', '--from', at('local.l0'), '--from', at('local.l1'), '--to', at('local-new.vol')], { env });
    await expectChainRestored(at('local-new.vol'), images, 's2');
    expect((await snapshots(at('local-new.vol'))).find((s) => s.name === 's0')!.reusedBlocks).toBeGreaterThan(0);

    // the level 1 onto a volume that holds the level 0 (s0 regular there): the reused
    // blocks replace s0's, which becomes a shadow snapshot as at the source
    cliOk(['restore', '--from', at('local.l0'), '--to', at('local-step.vol')], { env });
    const before = (await snapshots(at('local-step.vol')))[0];
    expect(before).toMatchObject({ name: 's0', shadow: false, reusedBlocks: 0 });
    const step = cliJson(['restore', '--from', at('local.l1'), '--to', at('local-step.vol'), '--json'], { env });
    expect(step.streams[0].stagedBlocks, 'blocks landed on VBNs s0 held there').toBeGreaterThan(0);
    await expectChainRestored(at('local-step.vol'), images, 's2');

    // and a level 2 on top of it, whose base (s2) is regular, after retention deleted s1
    cliOk(['snapshot', 'delete', vol, 's1'], { env });
    writeImage(at('local-4.raw'), BLOCKS, BS, 404, 0.1);
    cliOk(['volume', 'import', vol, '--from', at('local-4.raw')], { env });
    cliOk(['snapshot', 'create', vol, 's3'], { env });
    cliOk(['dump', vol, '--level', '2', '--snapshot', 's3', '--to', at('local.l2'), '--catalog', catalog], { env });
    cliOk(['restore', '--from', at('local.l2'), '--to', at('local-step.vol')], { env });
    expect(exported(`${at('local-step.vol')}@s3`, 'check-s3.raw').equals(fs.readFileSync(at('local-4.raw')))).toBe(true);
    expect((await snapshots(at('local-step.vol'))).map((s) => s.name)).toEqual(['s0', 's2', 's3']);
    await expectClean(at('local-step.vol'), { env });
  });

  it('through a server: snapshot shadow and the level 1 go through its control socket', async () => {
    const { vol, catalog, images } = reusedShadowBase('served');
    const server = await startServer(vol, ['--socket', at('served.sock')], locks);
    try {
      // s1, made a shadow one through the server, is no base of anything: it stays as it is
      expect(cliJson(['snapshot', 'shadow', vol, 's1', '--json'], { env })).toMatchObject({ name: 's1', shadow: true });
      expect(cliOk(['snapshot', 'shadow', vol, 's1'], { env }).stdout).toMatch(/^snapshot s1 is a shadow snapshot already$/m);
      const l1 = cliJson(['dump', vol, '--level', '1', '--to', at('served.l1'), '--catalog', catalog, '--json'], { env });
      expect(l1).toMatchObject({ level: 1, base: 's0' });
      cliOk(['restore', '--from', at('served.l0'), '--from', at('served.l1'), '--to', at('served-new.vol')], { env });
      expect(exported(at('served-new.vol'), 'served-active.raw').equals(images[2])).toBe(true);
      expect(exported(`${at('served-new.vol')}@s1`, 'served-s1.raw').equals(images[1])).toBe(true);
      await expectClean(at('served-new.vol'), { env });
    } finally {
      await server.stop();
    }
  });

  it('refuses a master snapshot, a mirror update\'s own and a missing one, changing nothing; a deleted base is still refused, its hint naming snapshot shadow', async () => {
    const vol = at('refuse.vol');
    const catalog = at('refuse.catalog.json');
    cliOk(['volume', 'create', vol, '--size', String(64 * BS)], { env });
    writeImage(at('refuse.raw'), 64, BS, 9, 0.1);
    cliOk(['volume', 'import', vol, '--from', at('refuse.raw')], { env });
    cliOk(['snapshot', 'create', vol, 'm1', '--master'], { env });
    cliOk(['snapshot', 'create', vol, 'base'], { env });
    cliOk(['mirror', 'update', vol, '--to', at('refuse-mirror.vol'), '--state', at('refuse-mirror.json')], { env });
    const list = await snapshots(vol);
    const mirrors = list.filter((s) => s.name.startsWith('mirror.'));
    expect(mirrors).toHaveLength(1);
    expectOneLineError(await refused(['snapshot', 'shadow', vol, 'm1'], { env }), 'a master snapshot', 4, /"m1" is a master snapshot: replicas synchronise to it/);
    expectOneLineError(await refused(['snapshot', 'shadow', vol, mirrors[0].name], { env }), 'a mirror update\'s snapshot', 4, /is a mirror update's own/);
    expectOneLineError(await refused(['snapshot', 'shadow', vol, 'nope'], { env }), 'a missing snapshot', 3, /no snapshot named "nope"/);
    expect(await snapshots(vol)).toEqual(list);

    cliOk(['dump', vol, '--level', '0', '--snapshot', 'base', '--to', at('refuse.l0'), '--catalog', catalog], { env });
    cliOk(['snapshot', 'delete', vol, 'base'], { env });
    cliOk(['snapshot', 'create', vol, 'next'], { env });
    const r = await refused(['dump', vol, '--level', '1', '--snapshot', 'next', '--to', at('refuse.l1'), '--catalog', catalog], { env });
    expectOneLineError(r, 'a deleted base', 3, /snapshot "base" .* no longer exists \(take a lower level instead: --level 0; .*imgstream snapshot shadow /);
    expect(fs.existsSync(at('refuse.l1'))).toBe(false);
  });
});
