// Block status and storage images seen by stock NBD clients: nbdinfo --map (base:allocation
// and imgstream:image:EXPR), qemu-img map, an incremental backup made with stock clients
// only, and nbdcopy of a mostly identical image (no-op rewrites). Expectations come from
// a model of the disk kept by the test and from the volume's own `image ... --ranges`.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { cli, missingBinaries, ok, qemuIo, run, startServer, type RunningServer } from './support.js';

const BS = 4096;
const BLOCKS = 4096; // a 16 MiB disk
const SIZE = BS * BLOCKS;
const missing = missingBinaries(['nbdinfo', 'nbdcopy', 'qemu-img', 'qemu-io']);
const root = tempDir('imgstream-nbd-bstatus-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

interface MapEntry {
  offset: number;
  length: number;
  type: number;
}

/** The blocks of each status in an nbdinfo --map --json answer. */
function blocksByType(entries: MapEntry[]): Map<number, Set<number>> {
  const out = new Map<number, Set<number>>();
  for (const e of entries) {
    expect(e.offset % BS, 'extents are whole blocks').toBe(0);
    expect(e.length % BS).toBe(0);
    if (!out.has(e.type)) out.set(e.type, new Set());
    for (let b = e.offset / BS; b < (e.offset + e.length) / BS; b++) out.get(e.type)!.add(b);
  }
  return out;
}

async function nbdMap(uri: string, context?: string): Promise<MapEntry[]> {
  const r = await ok('nbdinfo', ['--json', context ? `--map=${context}` : '--map', uri]);
  const entries = JSON.parse(r.stdout) as MapEntry[];
  expect(entries.reduce((a, e) => a + e.length, 0), 'the map covers the disk').toBe(SIZE);
  return entries;
}

function blocksWhere(model: Buffer, pred: (block: Buffer) => boolean): Set<number> {
  const out = new Set<number>();
  for (let b = 0; b < BLOCKS; b++) if (pred(model.subarray(b * BS, (b + 1) * BS))) out.add(b);
  return out;
}
const isZero = (b: Buffer) => b.every((x) => x === 0);

async function imageBlocks(vol: string, expression: string): Promise<number> {
  const r = await cli(['image', vol, expression, '--ranges', '--json'], locks);
  const img = JSON.parse(r.stdout) as { blocks: number; ranges: Array<[number, number]> };
  expect(img.ranges.reduce((a, [, n]) => a + n, 0)).toBe(img.blocks);
  return img.blocks;
}

describe.skipIf(missing.length > 0)(`block status and storage images through stock NBD clients${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  const vol = at('b.vol');
  let server: RunningServer;
  let uri: string;
  const model = Buffer.alloc(SIZE);
  /** Blocks the writes after snapshot s changed (new data). */
  const changed = new Set<number>();

  beforeAll(async () => {
    // data in [0, 2 MiB) and [8 MiB, 8 MiB + 40 KiB), explicit zeros in [4 MiB, 5 MiB), holes elsewhere
    for (let i = 0; i < (2 << 20); i += 4) model.writeUInt32LE((i * 2654435761) >>> 0, i);
    for (let i = 8 << 20; i < (8 << 20) + 40960; i++) model[i] = (i % 251) + 1;
    fs.writeFileSync(at('image.raw'), model);
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 's'], { env });
    server = await startServer(vol, ['--socket', at('b.sock'), '--cp-interval', '0'], locks);
    uri = server.info.uri;
    // after s: new data over data, over a hole, a rewrite of the same bytes, zeroes over data and over a hole
    await qemuIo(uri, ['write -P 0x41 65536 12288', 'write -P 0x42 12582912 8192', 'write -z 1048576 8192', 'write -z 14680064 65536', 'flush']);
    model.fill(0x41, 65536, 65536 + 12288);
    model.fill(0x42, 12582912, 12582912 + 8192);
    model.fill(0, 1048576, 1048576 + 8192);
    for (let b = 16; b < 19; b++) changed.add(b);
    changed.add(3072).add(3073);
    fs.writeFileSync(at('same.raw'), model.subarray(0, 1 << 20));
    await ok('qemu-img', ['convert', '-n', '-f', 'raw', at('same.raw'), '--target-image-opts', `driver=raw,size=${1 << 20},file.driver=nbd,file.server.type=unix,file.server.path=${at('b.sock')}`]);
    await qemuIo(uri, ['flush']);
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('nbdinfo --map and qemu-img map show data where the disk has data and holes elsewhere, as the volume counts them', async () => {
    const data = blocksWhere(model, (blk) => !isZero(blk));
    const types = blocksByType(await nbdMap(uri));
    expect([...types.keys()].sort()).toEqual([0, 3]);
    expect(types.get(0)).toEqual(data);
    // the volume's own count: the active image holds these blocks plus the map's nodes
    const active = await imageBlocks(vol, 'active');
    expect(active - data.size).toBeGreaterThanOrEqual(1);
    expect(active - data.size).toBeLessThanOrEqual(8);
    // qemu-img map agrees
    const q = await ok('qemu-img', ['map', '--output=json', '-f', 'raw', uri]);
    const qmap = JSON.parse(q.stdout) as Array<{ start: number; length: number; data: boolean; zero: boolean }>;
    const qdata = new Set<number>();
    for (const e of qmap) {
      if (!e.data) expect(e.zero, 'a hole reads as zeros').toBe(true);
      else for (let b = e.start / BS; b < (e.start + e.length) / BS; b++) qdata.add(b);
    }
    expect(qdata).toEqual(data);
  });

  it('nbdinfo --map=imgstream:image:EXPR shows the logical blocks whose data is in the image', async () => {
    const types = blocksByType(await nbdMap(uri, 'imgstream:image:active - s'));
    // 1: changed since s (the rewrite of the same bytes is not: it kept its block); 2: unmapped
    expect(types.get(1)).toEqual(changed);
    expect(types.get(2)).toEqual(blocksWhere(model, isZero));
    const unchanged = blocksWhere(model, (blk) => !isZero(blk));
    for (const c of changed) unchanged.delete(c);
    expect(types.get(0)).toEqual(unchanged);
    const diff = await imageBlocks(vol, 'active - s');
    expect(diff - changed.size, 'active - s: the changed blocks and rewritten map nodes').toBeGreaterThanOrEqual(0);
    expect(diff - changed.size).toBeLessThanOrEqual(8);
    // the snapshot's own image, as the active file system maps it: the blocks not changed since
    expect(blocksByType(await nbdMap(uri, 'imgstream:image:s')).get(1)).toEqual(unchanged);
    // listed, and a bad expression refused at negotiation with the reason
    const list = await ok('nbdinfo', ['--list', uri]);
    expect(list.stdout).toMatch(/imgstream:image:active - s/);
    const bad = await run('nbdinfo', ['--map=imgstream:image:active - nosuch', uri], { env: { LIBNBD_DEBUG: '1' } });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown plane "nosuch"/);
    const notSnapshot = await run('nbdinfo', ['--map=imgstream:image:s - active', uri], { env: { LIBNBD_DEBUG: '1' } });
    expect(notSnapshot.code).not.toBe(0);
    expect(notSnapshot.stderr).toMatch(/right side of "-" must be a snapshot/);
  });

  it('an incremental backup with stock clients only (nbdinfo --map, qemu-img, qemu-io) brings a copy of s to the disk exactly', async () => {
    await cli(['volume', 'export', `${vol}@s`, '--to', at('backup.raw')], locks);
    const ctx = 'imgstream:image:active - s';
    const sock = at('b.sock');
    for (const e of await nbdMap(uri, ctx)) {
      if (e.type === 1) {
        await ok('qemu-img', [
          'convert', '-n',
          '--image-opts', `driver=raw,offset=${e.offset},size=${e.length},file.driver=nbd,file.server.type=unix,file.server.path=${sock}`,
          '--target-image-opts', `driver=raw,offset=${e.offset},size=${e.length},file.driver=file,file.filename=${at('backup.raw')}`,
        ]);
      } else if (e.type === 2) await qemuIo(at('backup.raw'), [`write -z ${e.offset} ${e.length}`]);
    }
    expect(fs.readFileSync(at('backup.raw')).equals(model)).toBe(true);
  });
});

describe.skipIf(missing.length > 0)('nbdcopy of a mostly identical image', () => {
  it('keeps the unchanged blocks where they are: the image since the snapshot and the next level-1 dump are about the changed blocks', async () => {
    const vol = at('c.vol');
    const blocks = 8192; // 32 MiB
    const image = Buffer.alloc(blocks * BS);
    for (let i = 0; i < image.length; i += 4) image.writeUInt32LE((i * 2246822519 + 7) >>> 0, i);
    fs.writeFileSync(at('c0.raw'), image);
    await setupOk(['volume', 'create', vol, '--size', String(image.length)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('c0.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 'base'], { env });
    await cli(['dump', vol, '--level', '0', '--snapshot', 'base', '--to', at('c.l0'), '--catalog', at('catalog')], locks);
    // 1% of the blocks differ
    const differing = new Set<number>();
    for (let k = 0; k < 82; k++) differing.add((k * 97) % blocks);
    for (const blk of differing) image.fill(0xc3, blk * BS, blk * BS + 100);
    fs.writeFileSync(at('c1.raw'), image);
    const server = await startServer(vol, ['--socket', at('c.sock')], locks);
    try {
      await ok('nbdcopy', [at('c1.raw'), server.info.uri]);
      const img = JSON.parse((await cli(['image', vol, 'active - base', '--json'], locks)).stdout) as { blocks: number };
      expect(img.blocks).toBeGreaterThanOrEqual(differing.size);
      expect(img.blocks, 'the differing blocks and the map nodes above them').toBeLessThanOrEqual(differing.size + 24);
      await cli(['snapshot', 'create', vol, 'next'], locks);
      await cli(['dump', vol, '--level', '1', '--snapshot', 'next', '--compress', 'none', '--to', at('c.l1'), '--catalog', at('catalog')], locks);
    } finally {
      await server.stop();
    }
    const changedBytes = differing.size * BS;
    const l1 = fs.statSync(at('c.l1')).size;
    expect(l1).toBeGreaterThanOrEqual(changedBytes);
    expect(l1, 'the level 1 carries about the changed blocks, not the disk').toBeLessThan(changedBytes * 1.5 + (256 << 10));
  });
});
