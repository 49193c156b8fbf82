// Sizes through the real CLI: a 16 TiB volume (sparse: tiny on disk), every block size
// from 4K to 1M round-tripping two snapshots byte for byte, images shorter than the disk
// (the rest reads as zeros), and all-zero blocks left unmapped (thin).
import type { VolumeInfo } from '../../src/volume/info.js';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { allocatedBytes, cliJson, cliOk, nonZeroBlocks, runCliAsync, sha256, writeImage, type CliResult } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { checkReportOf, imageBytes, imageSha } from '../support/oracle.js';
import { inProcessJson, setupOk } from '../support/in-process.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const TiB = 1024 * 1024 * MiB;
const root = tempDir('imgstream-cli-sizes-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** What `volume info --json` prints. */
type Info = VolumeInfo;

/** `imgstream ...args --json` run in this process: setup and checks that are not what a test is about (in-process.ts). */
const here = <T>(args: string[]): Promise<T> => inProcessJson<T>(args, { env });

// tmpfs takes sparse files beyond 16 TiB; ext4 stops at 16 TiB minus a block
const shm = '/dev/shm';
const haveShm = fs.existsSync(shm) && fs.statSync(shm).isDirectory();

describe('a 16 TiB volume', () => {
  it.skipIf(!haveShm)('is created sparse, takes an image and a snapshot, reports its sizes and checks clean', async () => {
    const dir = fs.mkdtempSync(path.join(shm, 'imgstream-16t-'));
    const vol = path.join(dir, 'big.vol');
    try {
      const created = cliJson<{ blockSize: number; logicalSize: number; volumeBytes: number; nblocks: number }>(
        ['volume', 'create', vol, '--size', '16T', '--volume-size', '16T', '--block-size', '4K'],
        { env },
      );
      expect(created.blockSize).toBe(4096);
      expect(created.logicalSize).toBe(16 * TiB);
      expect(created.volumeBytes).toBeLessThanOrEqual(16 * TiB);
      expect(created.volumeBytes).toBeGreaterThan(15.9 * TiB);
      expect(fs.statSync(vol).size).toBe(created.volumeBytes);
      expect(allocatedBytes(vol)).toBeLessThan(64 * MiB);

      const img = randomImage(1024, 4096, 16); // 4 MiB with zero blocks
      const imgFile = path.join(dir, 'img.raw');
      fs.writeFileSync(imgFile, img);
      await setupOk(['volume', 'import', vol, '--from', imgFile], { env });
      fs.rmSync(imgFile);
      await setupOk(['snapshot', 'create', vol, 'first'], { env });
      const info = await here<Info>(['volume', 'info', vol]);
      expect(info.blockSize).toBe(4096);
      expect(info.logicalSize).toBe(16 * TiB);
      expect(info.logicalBlocks).toBe(2 ** 32);
      expect(info.volumeBytes).toBe(created.volumeBytes);
      expect(info.nblocks).toBe(created.nblocks);
      expect(info.metadataBytes + info.nblocks * 4096).toBe(info.volumeBytes);
      expect(info.mappedBlocks).toBe(nonZeroBlocks(img, 4096));
      expect(info.usedBlocks).toBeGreaterThanOrEqual(info.mappedBlocks);
      expect(info.heldBackBlocks).toBe(64);
      expect(info.freeBlocks).toBe(info.nblocks - 1 - info.usedBlocks - info.heldBackBlocks); // VBN 0 is never used
      expect(info.snapshots).toBe(1);

      const check = await here<{ ok: boolean }>(['volume', 'check', vol]);
      expect(check.ok).toBe(true);
      // the disk holds exactly the image: importing it again changes nothing (a 16 TiB
      // export is not something a test can read back)
      const again = cliJson<{ changedBlocks: number; unmappedBlocks: number; unchangedBlocks: number }>(['volume', 'import', vol, '--from', '-'], { env, input: img });
      expect(again.changedBlocks).toBe(0);
      expect(again.unmappedBlocks).toBe(0);
      expect(again.unchangedBlocks).toBe(2 ** 32);
      expect(allocatedBytes(vol)).toBeLessThan(64 * MiB);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 90_000);
});

async function ok(p: Promise<CliResult>, what: string): Promise<CliResult> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what}: exit ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return r;
}

/** Runs `fn` over `items`, at most `limit` at a time. */
async function inParallel<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  const queue = [...items];
  await Promise.all(
    Array.from({ length: limit }, async () => {
      for (let item = queue.shift(); item !== undefined; item = queue.shift()) await fn(item);
    }),
  );
}

describe('every block size', () => {
  const sizes = [4, 8, 16, 32, 64, 128, 256, 512, 1024].map((k) => k * KiB);

  it('4K to 1M: two snapshots and the active file system export byte-identical', async () => {
    const done: number[] = [];
    await inParallel(sizes, 3, async (bs) => {
      const run = (args: string[], input?: Buffer) => ok(runCliAsync(args, { env, input }), `bs ${bs}: ${args.slice(0, 2).join(' ')}`);
      // enough blocks for a two-level map at 4K (512 entries a node), more than one 8 MiB
      // import chunk at 1M
      const blocks = Math.max(12, Math.ceil((2.5 * MiB) / bs));
      const vol = path.join(root, `bs${bs}.vol`);
      const created = await here<Info>(['volume', 'create', vol, '--size', String(blocks * bs), '--block-size', String(bs), '--max-snapshots', '4']);
      expect(created.blockSize).toBe(bs);
      expect(created.logicalSize).toBe(blocks * bs);
      const one = randomImage(blocks, bs, bs + 1);
      const two = Buffer.from(one);
      mutate(two, bs, Math.ceil(blocks / 4), bs + 2);
      expect(sha256(two)).not.toBe(sha256(one));
      // imports from a file (its up-front estimate of the room it needs once refused the
      // second at 256K, which fits: the import from stdin, which does not estimate, took it)
      const raw = path.join(root, `bs${bs}.img`);
      fs.writeFileSync(raw, one);
      await setupOk(['volume', 'import', vol, '--from', raw], { env });
      await setupOk(['snapshot', 'create', vol, 'one'], { env });
      fs.writeFileSync(raw, two);
      await setupOk(['volume', 'import', vol, '--from', raw], { env });
      await setupOk(['snapshot', 'create', vol, 'two'], { env });
      fs.rmSync(raw);
      // read here as `volume export` reads them (oracle.ts); the export command itself runs below
      const e1 = await imageBytes(`${vol}@one`, env);
      const e2 = await imageBytes(`${vol}@two`, env);
      expect(e1.length, `bs ${bs}`).toBe(one.length);
      expect(e1.equals(one), `bs ${bs}: snapshot one`).toBe(true);
      expect(e2.equals(two), `bs ${bs}: snapshot two`).toBe(true);
      if (bs === 4 * KiB || bs === 64 * KiB || bs === MiB) {
        // the active file system, to a (sparse) file this time
        await run(['volume', 'export', vol, '--to', path.join(root, `bs${bs}.raw`)]);
        expect(fs.readFileSync(path.join(root, `bs${bs}.raw`)).equals(two), `bs ${bs}: active`).toBe(true);
      }
      const check = await checkReportOf(vol, env);
      expect(check.ok, `bs ${bs}: check`).toBe(true);
      // thin at every block size: the active file system maps only the non-zero blocks
      expect(check.trees.find((t) => t.name === 'active')?.dataBlocks, `bs ${bs}`).toBe(nonZeroBlocks(two, bs));
      fs.rmSync(vol);
      done.push(bs);
    });
    expect(done.sort((a, b) => a - b)).toEqual(sizes);
  }, 120_000);
});

describe('volume create', () => {
  it('says how many volume blocks it made (not the logical disk\'s blocks) and the file size; the default file holds blocks for twice --size and its map, the plane changes of a CP and the journal reserve, plus metadata', async () => {
    const vol = path.join(root, 'said.vol');
    const out = cliOk(['volume', 'create', vol, '--size', '1M'], { env }).stdout;
    expect(out).toMatch(/^created \S+said\.vol: 1\.00 MiB logical disk, 542 volume blocks of 4\.00 KiB \(\d+\.\d+ MiB volume file\), uuid [0-9a-f]{32}$/m);
    const info = await here<Info>(['volume', 'info', vol]);
    // 2 x (256 + 1 map node) + 4 x 1 plane block + 16, and 8 held back for journals
    expect(info.nblocks).toBe(542);
    expect(fs.statSync(vol).size).toBeGreaterThan(2 * MiB);
    fs.rmSync(vol);
  });
});

describe('short images and zero blocks', () => {
  const bs = 4096;
  const diskBlocks = 1024; // 4 MiB

  it('an image shorter than the disk exports as the image followed by zeros', async () => {
    const vol = path.join(root, 'short.vol');
    await setupOk(['volume', 'create', vol, '--size', '4M'], { env });
    // first fill the whole disk, so the tail has something to lose
    fs.writeFileSync(path.join(root, 'full.img'), randomImage(diskBlocks, bs, 77, 0.1));
    await setupOk(['volume', 'import', vol, '--from', path.join(root, 'full.img')], { env });
    // 300 blocks and a bit: the last block is partial
    const short = Buffer.concat([randomImage(300, bs, 78), Buffer.alloc(1000, 0xa5)]);
    fs.writeFileSync(path.join(root, 'short.img'), short);
    const r = await here<{ bytes: number; blocks: number; unmappedBlocks: number }>(['volume', 'import', vol, '--from', path.join(root, 'short.img')]);
    expect(r.bytes).toBe(short.length);
    const expected = Buffer.alloc(diskBlocks * bs);
    short.copy(expected);
    const out = cliOk(['volume', 'export', vol, '--to', '-'], { env }).stdoutBytes;
    expect(out.length).toBe(diskBlocks * bs);
    expect(out.subarray(0, short.length).equals(short)).toBe(true);
    expect(out.equals(expected)).toBe(true);
    const info = await here<Info>(['volume', 'info', vol]);
    expect(info.mappedBlocks).toBe(nonZeroBlocks(expected, bs));
    expect((await here<{ ok: boolean }>(['volume', 'check', vol])).ok).toBe(true);
  }, 60_000);

  it('all-zero blocks stay unmapped: mappedBlocks counts only non-zero blocks', async () => {
    const vol = path.join(root, 'thin.vol');
    await setupOk(['volume', 'create', vol, '--size', '4M'], { env });
    const empty = await here<Info>(['volume', 'info', vol]);
    expect(empty.mappedBlocks).toBe(0);
    expect(empty.usedBlocks).toBe(0);

    const img = writeImage(path.join(root, 'thin.img'), diskBlocks, bs, 91, 0.6); // mostly zero
    const nonZero = nonZeroBlocks(img, bs);
    expect(nonZero).toBeGreaterThan(diskBlocks * 0.25);
    expect(nonZero).toBeLessThan(diskBlocks * 0.55);
    await setupOk(['volume', 'import', vol, '--from', path.join(root, 'thin.img')], { env });
    const info = await here<Info>(['volume', 'info', vol]);
    expect(info.mappedBlocks).toBe(nonZero);
    expect(info.usedBlocks - info.mappedBlocks).toBeLessThan(8); // only a few map blocks on top
    expect(await imageSha(vol, env)).toBe(sha256(img)); // read as volume export reads it (oracle.ts)

    // zeroing mapped blocks unmaps them
    const zeroed = Buffer.from(img);
    let cleared = 0;
    for (let b = 0; b < diskBlocks && cleared < 50; b++) {
      const blk = zeroed.subarray(b * bs, (b + 1) * bs);
      if (blk.some((x) => x !== 0)) {
        blk.fill(0);
        cleared++;
      }
    }
    const r = cliJson<{ unmappedBlocks: number; changedBlocks: number }>(['volume', 'import', vol, '--from', '-'], { env, input: zeroed });
    expect(r.unmappedBlocks).toBe(50);
    expect(r.changedBlocks).toBe(0);
    expect((await here<Info>(['volume', 'info', vol])).mappedBlocks).toBe(nonZero - 50);

    // an all-zero image leaves nothing mapped
    cliOk(['volume', 'import', vol, '--from', '-'], { env, input: Buffer.alloc(diskBlocks * bs) });
    const none = await here<Info>(['volume', 'info', vol]);
    expect(none.mappedBlocks).toBe(0);
    expect(await imageSha(vol, env)).toBe(sha256(Buffer.alloc(diskBlocks * bs)));
    expect((await here<{ ok: boolean }>(['volume', 'check', vol])).ok).toBe(true);
  }, 60_000);
});
