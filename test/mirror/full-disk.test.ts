// A first mirror transfer into a file system that fills up (a small tmpfs: needs root, as
// CI's containers and this project's machines run tests): the update fails with exit 10
// and says what it kept at the destination, how much space that holds and how to drop it;
// mirror status says so too; no path of the daemon's reaches a peer client; with space
// freed the next update resumes, and `mirror abandon` drops the partial transfer.
import fs from 'node:fs';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, cliJson, cliOk, finished, runCli, sha256, writeImage, listeningPort } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { makeToken } from '../peer/support.js';
import { imageSha } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 4096; // 16 MiB
const root = tempDir('imgstream-mirror-full-');
const small = path.join(root, 'small');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const at = (f: string) => path.join(root, f);
const src = at('src.vol');

function mountSmall(size: string, remount = false): boolean {
  fs.mkdirSync(small, { recursive: true });
  return spawnSync('mount', ['-t', 'tmpfs', '-o', `${remount ? 'remount,' : ''}size=${size}`, 'tmpfs', small]).status === 0;
}
const canMount = process.getuid?.() === 0 && mountSmall('10M');

afterAll(() => {
  if (canMount) spawnSync('umount', [small]);
  fs.rmSync(root, { recursive: true, force: true });
});

beforeAll(async () => {
  writeImage(at('img'), BLOCKS, BS, 12, 0.05);
  await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`], { env });
  await setupOk(['volume', 'import', src, '--from', at('img')], { env });
});

/** sha256 of the disk at VOL, read here as `volume export` reads it (oracle.ts). */
const active = (vol: string): Promise<string> => imageSha(vol, env);

interface Status {
  relationships: Array<{ destination: string; state: string; partial: { bytes: number } | null; pending: unknown }>;
}

describe.runIf(canMount)('mirror into a file system that fills up', () => {
  it('says what it kept and how to drop it, in the error and in status; resumes once there is space', async () => {
    const dest = path.join(small, 'm.vol');
    // slow enough that the destination acknowledges (every second) before the disk is full
    const r = runCli(['mirror', 'update', src, '--to', dest, '--limit-rate', '6M'], { env });
    expect(r.code, r.stderr).toBe(10);
    expect(r.stderr).toMatch(/no space left/);
    expect(r.stderr).toMatch(/keeps \d+(\.\d+)? MiB of this transfer \(\.m\.vol\.mirror-new[^)]*\)/);
    expect(r.stderr).toContain(`imgstream mirror abandon ${src} --to ${dest}`);
    const st = cliJson<Status>(['mirror', 'status', src, '--json'], { env });
    expect(st.relationships[0].partial!.bytes).toBeGreaterThan(4 << 20);
    expect(cliOk(['mirror', 'status', src], { env }).stdout).toMatch(/partial transfer kept at the destination to resume: \d+(\.\d+)? MiB.*mirror abandon/);

    // room again: the next update resumes what arrived
    expect(mountSmall('64M', true)).toBe(true);
    const done = cliJson<{ transfers: Array<{ resumedRecords: number }> }>(['mirror', 'update', src, '--to', dest, '--json'], { env });
    expect(done.transfers[0].resumedRecords).toBeGreaterThan(0);
    expect(await active(dest)).toBe(await active(src));
    expect(cliJson<Status>(['mirror', 'status', src, '--json'], { env }).relationships[0].partial).toBe(null);
  }, 60_000);

  it('through a peer daemon: no daemon path in the error, abandon through the daemon frees the space', async () => {
    const token = makeToken(root);
    const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', small, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const ended = finished(child, 120_000);
    try {
      const port = await listeningPort(child, ended);
      const url = `peer://127.0.0.1:${port}/p.vol`;
      const peer = ['--token-file', token, '--plain'];
      fs.rmSync(path.join(small, 'm.vol'), { force: true });
      expect(mountSmall('10M', true)).toBe(true);
      // slow enough that the daemon acknowledges before the disk is full (with nothing acknowledged it keeps nothing);
      // raw, as to a local path: these blocks compress to next to nothing
      const r = runCli(['mirror', 'update', src, '--to', url, ...peer, '--limit-rate', '6M', '--compress', 'none'], { env });
      expect(r.code, r.stderr).toBe(10);
      expect(r.stderr).not.toContain(small);
      expect(r.stderr).toMatch(/keeps \d+(\.\d+)? MiB of this transfer \(\.p\.vol\.mirror-new/);
      expect(r.stderr).toContain(`imgstream mirror abandon ${src} --to ${url}`);
      expect(fs.readdirSync(small).length).toBeGreaterThan(0);
      const ab = cliJson<{ freedBytes: number; files: string[] }>(['mirror', 'abandon', src, '--to', url, ...peer, '--json'], { env });
      expect(ab.freedBytes).toBeGreaterThan(4 << 20);
      expect(ab.files).toContain('.p.vol.mirror-new');
      expect(fs.readdirSync(small)).toEqual([]);
      const rel = cliJson<Status>(['mirror', 'status', src, '--json'], { env }).relationships.find((x) => x.destination === url)!;
      expect(rel.partial).toBe(null);
      expect(rel.pending).toBe(null);
      expect(rel.state).toBe('idle');
    } finally {
      child.kill('SIGTERM');
      await ended;
    }
  }, 60_000);

  it('an incremental that fills the file system says the mirror is as it was, what it needs and that its blocks take room', async () => {
    const dest = path.join(small, 'i.vol');
    expect(mountSmall('64M', true)).toBe(true);
    cliOk(['mirror', 'update', src, '--to', dest], { env });
    const before = await active(dest);
    // room for about 2 MiB more; the update rewrites 8 MiB
    const usedKiB = Number(spawnSync('du', ['-sk', small], { encoding: 'utf8' }).stdout.split('\t')[0]);
    expect(mountSmall(`${usedKiB + 2048}k`, true)).toBe(true);
    writeImage(at('img2'), BLOCKS / 2, BS, 13, 0);
    await setupOk(['volume', 'import', src, '--from', at('img2')], { env });
    const r = runCli(['mirror', 'update', src, '--to', dest], { env });
    expect(r.code, r.stderr).toBe(10);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/no space left.*; the mirror stays at its last complete state; the blocks this update wrote into its free space .* still take room in its file .*: free space there \(this one sends \d+(\.\d+)? MiB of blocks\), or mirror to a larger file system$/);
    expect(await active(dest)).toBe(before);
    expect(mountSmall('64M', true)).toBe(true);
    cliOk(['mirror', 'update', src, '--to', dest], { env });
    expect(await active(dest)).toBe(await active(src));
  }, 60_000);
});

describe('the mirror volume itself full', () => {
  it('an update replacing most of the disk after the source deleted the base says to start a new mirror, and that works', async () => {
    const vol = at('tight.vol');
    const mirror = at('tight.mirror');
    const raw = at('tight.raw');
    const image = writeImage(raw, 1536, BS, 21, 0); // 6 MiB of data in an 8 MiB disk of a 10 MiB volume
    await setupOk(['volume', 'create', vol, '--size', '8M', '--volume-size', '10M'], { env });
    await setupOk(['volume', 'import', vol, '--from', raw], { env });
    await setupOk(['snapshot', 'create', vol, 's1'], { env });
    cliOk(['mirror', 'update', vol, '--to', mirror], { env });
    // the source deletes every snapshot, the mirror's base too (kept without --force), then rewrites the disk a MiB at a time
    for (const s of cliJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol], { env }).snapshots) await setupOk(['snapshot', 'delete', vol, s.name, '--force'], { env });
    const next = writeImage(at('tight2.raw'), 1536, BS, 22, 0);
    for (let mib = 1; mib <= 6; mib++) {
      image.set(next.subarray((mib - 1) << 20, mib << 20), (mib - 1) << 20);
      fs.writeFileSync(raw, image);
      await setupOk(['volume', 'import', vol, '--from', raw], { env });
    }
    await setupOk(['snapshot', 'create', vol, 's2'], { env });
    const full = runCli(['mirror', 'update', vol, '--to', mirror], { env });
    expect(full.code, full.stderr).toBe(8);
    const lines = full.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/volume is full/);
    expect(lines[0]).toMatch(/has no room for both: drop this transfer \(imgstream mirror abandon .* --to .*tight\.mirror\), move the mirror aside, and update again into a new mirror/);
    // as the hint says
    cliOk(['mirror', 'abandon', vol, '--to', mirror], { env });
    fs.renameSync(mirror, at('tight.mirror.old'));
    cliOk(['mirror', 'update', vol, '--to', mirror], { env });
    expect(await active(mirror)).toBe(sha256(Buffer.concat([image, Buffer.alloc(2 << 20)])));
  });
});
