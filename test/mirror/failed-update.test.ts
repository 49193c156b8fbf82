// A mirror update that cannot finish leaves nothing behind. A destination no transfer could
// finish at (a name over 255 bytes, a missing directory, an empty path, a directory) is
// refused in one line before the source takes its snapshot; names just short of the limit
// work (the side files beside them stay within it). A transfer that fails after the
// snapshot with nothing acknowledged (a flush that fails, a disk full from the start)
// drops that snapshot and every side file; one that fails after the destination recorded
// progress keeps both and resumes (the documented resume, unchanged).
import fs from 'node:fs';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { breakMirror, localDestination, MirrorState, sendMirror, type MirrorResult } from '../../src/mirror/index.js';
import { ImgstreamError } from '../../src/core/errors.js';
import { cliJson, runCli, runCliAsync, stderrLines, writeImage } from '../support/cli.js';
import { startServer } from '../nbd/support.js';
import { mutate, tempDir } from '../support/images.js';
import { imageSha } from '../support/oracle.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const BLOCKS = 1024; // 4 MiB
const root = tempDir('imgstream-mirror-failed-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
process.env.IMGSTREAM_LOCK_DIR = env.IMGSTREAM_LOCK_DIR; // the in-process transfers below
const at = (f: string) => path.join(root, f);
const src = at('src.vol');
const small = at('small');
afterAll(() => {
  spawnSync('umount', [small]);
  fs.rmSync(root, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

beforeAll(async () => {
  writeImage(at('img'), BLOCKS, BS, 5, 0.05);
  await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`], { env });
  await setupOk(['volume', 'import', src, '--from', at('img')], { env });
});

/** A name of exactly `bytes` bytes. */
const named = (c: string, bytes: number) => c.repeat(bytes);

function snapshotsOf(vol: string): string[] {
  const v = Volume.open(vol, { write: false });
  try {
    return v.snapshots().map((s) => s.name);
  } finally {
    v.close();
  }
}

/** The hidden files of a directory: side files, temporaries. */
const hidden = (dir: string) => fs.readdirSync(dir).filter((f) => f.startsWith('.'));

/** sha256 of the disk at VOL, read here as `volume export` reads it (oracle.ts). */
const active = (vol: string): Promise<string> => imageSha(vol, env);

describe('a destination no transfer could finish at', () => {
  it('is refused in one line naming it, before any snapshot or transfer; mirror start does not loop on it', () => {
    fs.mkdirSync(at('dir'), { recursive: true });
    const before = snapshotsOf(src);
    const long = at(named('m', 256));
    const cases: Array<[string, number, RegExp]> = [
      [long, 4, /m{256}: file name too long \(at most 255 bytes per name\)/],
      [at('nodir/m.vol'), 3, /nodir\/m\.vol: no such directory .*nodir/],
      ['', 4, /the destination path is empty/],
      [at('dir'), 5, /dir: is a directory, not a volume/],
    ];
    for (const [to, code, message] of cases) {
      for (const args of [['mirror', 'update', src, '--to', to], ['mirror', 'start', src, '--to', to, '--every', '1h', '--max-runs', '1']]) {
        const r = runCli(args, { env });
        expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
        const lines = stderrLines(r);
        expect(lines, r.stderr).toHaveLength(1);
        expect(lines[0]).toMatch(message);
        expect(lines[0]).not.toMatch(/ENAMETOOLONG|mirror-new|imgstream-[0-9a-f]{16}/);
      }
    }
    expect(snapshotsOf(src)).toEqual(before);
    expect(hidden(root)).toEqual([]);
    expect(fs.readdirSync(at('dir'))).toEqual([]);
    expect(fs.existsSync(at('mirrors.json')) ? cliJson<{ relationships: unknown[] }>(['mirror', 'status', src], { env }).relationships : []).toEqual([]);
  });

  it('mirror start --max-runs ends with the last update\'s error when it failed, its --json log JSON lines throughout', () => {
    const to = at('broken.vol');
    expect(runCli(['mirror', 'update', src, '--to', to], { env }).code).toBe(0);
    const broke = runCli(['mirror', 'break', to], { env });
    expect(broke.code).toBe(0);
    // its hint runs as printed: the source this machine mirrors to it
    expect(broke.stdout + broke.stderr).toContain(`${to}: broken off, writable (bring it back with: imgstream mirror resync ${src} --to ${to})`);
    // a destination this machine knows no source of: a placeholder
    const other = at('unknown-source.vol');
    expect(runCli(['mirror', 'update', src, '--to', other, '--state', at('other-state.json')], { env }).code).toBe(0);
    const unknown = runCli(['mirror', 'break', other], { env });
    expect(unknown.stdout + unknown.stderr).toContain(`(bring it back with: imgstream mirror resync SOURCE --to ${other})`);
    // a resync where no mirror is (a mistyped path): refused, never a full copy under the typo
    const typo = at('no-such-mirror.vol');
    const snapsBefore = snapshotsOf(src);
    const nothing = runCli(['mirror', 'resync', src, '--to', typo], { env });
    expect(nothing.code, nothing.stderr).toBe(3);
    expect(stderrLines(nothing)).toEqual([expect.stringContaining(`no mirror there to resync (a new mirror starts with: imgstream mirror update ${src} --to ${typo})`)]);
    expect(fs.existsSync(typo)).toBe(false);
    expect(snapshotsOf(src)).toEqual(snapsBefore);
    // every update is refused (a broken-off mirror): the loop logs each, then exits with the refusal's code
    const r = runCli(['mirror', 'start', src, '--to', to, '--every', '1s', '--max-runs', '2', '--json'], { env, timeoutMs: 30_000 });
    expect(r.code, r.stderr).toBe(4);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event?: string; runs?: number; failures?: number; error?: { exit: number } });
    expect(events.map((e) => e.event ?? (e.error ? 'error' : '?'))).toEqual(['failed', 'failed', 'finished', 'error']); // the error as every --json command prints it
    expect(events[2]).toMatchObject({ runs: 2, failures: 2 });
    expect(events[3].error!.exit).toBe(4);
    expect(stderrLines(r).at(-1)).toBe(`imgstream: ${src}: the last update to ${to} failed (2 of 2 updates failed): ${to}: the mirror was broken off and may have changed (bring it back with: imgstream mirror resync ${src} --to ${to})`);
    // once the last one succeeds, exit 0
    expect(runCli(['mirror', 'resync', src, '--to', to], { env }).code).toBe(0);
    const ok = runCli(['mirror', 'start', src, '--to', to, '--every', '1s', '--max-runs', '1', '--json'], { env, timeoutMs: 30_000 });
    expect(ok.code, ok.stderr).toBe(0);
    expect(ok.stdout.trim().split('\n').map((l) => (JSON.parse(l) as { event: string }).event)).toEqual(['update', 'finished']);
  });

  it('names just short of the limit work: their side files stay within it, and none is left', async () => {
    // `.NAME.mirror-transfer` fits for these; the resume file's next version used to be `.NAME.mirror-transfer.tmp`, which did not
    for (const bytes of [235, 237]) {
      const dest = at(named(String.fromCharCode(96 + (bytes % 26)), bytes));
      const r = runCli(['mirror', 'update', src, '--to', dest], { env });
      expect(r.code, r.stderr).toBe(0);
      expect(await active(dest)).toBe(await active(src));
      expect(hidden(root)).toEqual([]);
    }
  });
});

/** An in-process update (or resync) of `src` to `dest`, acknowledging every `ackBytes`. */
async function update(dest: string, state: MirrorState, ackBytes?: number, op: 'mirror.update' | 'mirror.resync' = 'mirror.update'): Promise<MirrorResult> {
  const vol = Volume.open(src, { write: true, mirror: true });
  try {
    const d = localDestination(dest, undefined, { ackBytes });
    try {
      return await sendMirror(vol, d.channel, { destination: dest, name: path.basename(dest), op, state, compress: 'none' });
    } finally {
      d.channel.close();
      await d.settled;
    }
  } finally {
    vol.close();
  }
}

/** Makes the destination's flushes fail with EIO after `good` of them succeeded. */
function failFlushesAfter(good: number): void {
  const real = fs.fdatasync;
  let n = 0;
  vi.spyOn(fs, 'fdatasync').mockImplementation(((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    if (n++ < good) return real(fd, cb);
    const err = Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5, syscall: 'fdatasync' });
    process.nextTick(() => cb(err));
  }) as typeof fs.fdatasync);
}

describe('a transfer that fails after the source took its snapshot', () => {
  it('with nothing acknowledged: the snapshot, the side files and the pending transfer go', async () => {
    const dest = at('flush.vol');
    const state = new MirrorState(at('flush-state.json'));
    const before = snapshotsOf(src);
    failFlushesAfter(0);
    await expect(update(dest, state)).rejects.toThrow(/i\/o error/);
    vi.restoreAllMocks();
    expect(snapshotsOf(src)).toEqual(before);
    expect(hidden(root).filter((f) => f.includes('flush'))).toEqual([]);
    expect(fs.existsSync(dest)).toBe(false);
    const rel = state.relationships()[0];
    expect(rel.state).toBe('failed');
    expect(rel.pending).toBe(null);
    expect(rel.partial).toBe(null);
    // and the next update makes the mirror
    const r = await update(dest, state);
    expect(r.mode).toBe('full');
    expect(await active(dest)).toBe(await active(src));
  });

  it('after the destination recorded progress: both are kept and the next update resumes', async () => {
    const dest = at('resume.vol');
    const state = new MirrorState(at('resume-state.json'));
    const before = snapshotsOf(src);
    failFlushesAfter(2); // the first acknowledgement (the volume and the stage file), after the first record
    await expect(update(dest, state, 4096)).rejects.toThrow(/i\/o error/);
    vi.restoreAllMocks();
    const taken = snapshotsOf(src).filter((s) => !before.includes(s));
    expect(taken).toHaveLength(1);
    expect(hidden(root)).toEqual(expect.arrayContaining(['.resume.vol.mirror-new', '.resume.vol.mirror-transfer']));
    expect(state.relationships()[0].pending).not.toBe(null);
    const r = await update(dest, state);
    expect(r.resumedRecords).toBeGreaterThan(0);
    expect(r.top).toBe(taken[0]);
    expect(await active(dest)).toBe(await active(src));
    expect(hidden(root).filter((f) => f.includes('resume'))).toEqual([]);
  });
});

describe('a resync that fails after the destination recorded progress', () => {
  it('says to run the resync again (it starts over, the mirror stays broken off), never that an update resumes it; running it converges', async () => {
    const dest = at('resync.vol');
    const state = new MirrorState(at('resync-state.json'));
    await update(dest, state);
    breakMirror(dest);
    const img = fs.readFileSync(at('img'));
    mutate(img, BS, 300, 11);
    fs.writeFileSync(at('img2'), img);
    await setupOk(['volume', 'import', src, '--from', at('img2')], { env });
    failFlushesAfter(2);
    const err = (await update(dest, state, 4096, 'mirror.resync').catch((e: unknown) => e)) as ImgstreamError;
    vi.restoreAllMocks();
    expect(err).toBeInstanceOf(ImgstreamError);
    expect(err.message).toMatch(/i\/o error/);
    expect(hidden(root).filter((f) => f.startsWith('.resync.vol.'))).not.toEqual([]); // it kept what it staged
    expect(err.hint).toMatch(new RegExp(`^the mirror stays broken off until a resync completes: run it again once the cause is fixed, it starts over and drops the [\\d.]+ [KM]iB this one kept at the destination \\(\\.resync\\.vol\\.mirror-[^)]*\\): imgstream mirror resync ${src.replace(/[.]/g, '\\.')} --to ${dest.replace(/[.]/g, '\\.')}; to drop them now: imgstream mirror abandon `));
    expect(err.hint).not.toMatch(/resumes|run the update again/);
    const again = await update(dest, state, undefined, 'mirror.resync');
    expect(again.resumedRecords).toBe(0);
    expect(await active(dest)).toBe(await active(src));
    expect(hidden(root).filter((f) => f.startsWith('.resync.vol.'))).toEqual([]);
  });
});

function mountSmall(size: string): boolean {
  fs.mkdirSync(small, { recursive: true });
  return spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', small]).status === 0;
}

describe('a destination disk full from the start', () => {
  it('fails with exit 10 and leaves neither side files nor the snapshot (needs root for a small tmpfs)', (ctx) => {
    if (process.getuid?.() !== 0 || !mountSmall('256k')) ctx.skip();
    const before = snapshotsOf(src);
    const dest = path.join(small, 'm.vol');
    const r = runCli(['mirror', 'update', src, '--to', dest], { env });
    expect(r.code, r.stderr).toBe(10);
    expect(stderrLines(r)).toHaveLength(1);
    expect(r.stderr).toMatch(/no space left/);
    expect(r.stderr).not.toMatch(/keeps .* of this transfer/);
    expect(fs.readdirSync(small)).toEqual([]);
    expect(snapshotsOf(src)).toEqual(before);
  });

  it('of a volume an NBD server holds: the server deletes the snapshot it took', async (ctx) => {
    if (process.getuid?.() !== 0 || !fs.existsSync(small) || fs.readdirSync(small).length > 0) ctx.skip();
    const vol = at('served.vol');
    await setupOk(['volume', 'create', vol, '--size', `${(BLOCKS * BS) >> 20}M`], { env });
    await setupOk(['volume', 'import', vol, '--from', at('img')], { env });
    const names = async () => (JSON.parse((await runCliAsync(['snapshot', 'list', vol, '--json'], { env })).stdout) as { snapshots: Array<{ name: string }> }).snapshots.map((x) => x.name);
    const server = await startServer(vol, ['--socket', at('v.sock')], env.IMGSTREAM_LOCK_DIR);
    try {
      const before = await names();
      const r = await runCliAsync(['mirror', 'update', vol, '--to', path.join(small, 's.vol')], { env });
      expect(r.code, r.stderr).toBe(10);
      expect(r.stderr).toMatch(/no space left/);
      expect(fs.readdirSync(small)).toEqual([]);
      expect(await names()).toEqual(before);
    } finally {
      await server.stop();
    }
  });
});
