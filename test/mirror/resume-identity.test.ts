// A stopped transfer resumes only into the very mirror its acknowledged records went into.
// The mirror moved away, deleted, or replaced by a copy taken before the transfer (the
// same file, uuid and CP: only its free space differs) holds none of them: resuming into
// it built a damaged mirror (a first volume made of the incremental records alone, or a
// mirror lacking the 'resumed' blocks) and exited 0. Now the update says in one line that
// it dropped the stopped transfer, does what it would do fresh (a full copy where the
// mirror is gone), and the mirror is exact: every snapshot and the active disk, and a
// clean check. Locally (SIGINT, SIGKILL) and through a real `serve peer` daemon.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, finished, listeningPort, runCli, spawnCli, writeImage, type CliResult } from '../support/cli.js';
import { mutate, tempDir } from '../support/images.js';
import { checkReportOf, imageSha, snapshotNamesOf } from '../support/oracle.js';
import { inProcessJson, setupOk } from '../support/in-process.js';
import { makeToken } from '../peer/support.js';

const BS = 4096;
const BLOCKS = 4096; // 16 MiB
const root = tempDir('imgstream-mirror-resume-identity-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json'), XDG_STATE_HOME: path.join(root, 'state') };
const at = (f: string) => path.join(root, f);
let token = '';

beforeAll(() => {
  token = makeToken(root);
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** The records the resume file beside `dest` says it holds (0 when there is none, or it is being replaced). */
function ackedIn(dest: string): number {
  try {
    return (JSON.parse(fs.readFileSync(path.join(path.dirname(dest), `.${path.basename(dest)}.mirror-transfer`), 'utf8')) as { acked?: number }).acked ?? 0;
  } catch {
    return 0;
  }
}

/** A source mirrored once to `to` (the mirror file at `file`), then changed by 3000 blocks: the next transfer takes a few seconds at 4 MiB/s. */
async function mirroredThenChanged(name: string, to: string): Promise<string> {
  const src = at(`${name}.vol`);
  const img = writeImage(at(`${name}.img`), BLOCKS, BS, 7, 0.1);
  await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`, '--volume-size', '64M'], { env });
  await setupOk(['volume', 'import', src, '--from', at(`${name}.img`)], { env });
  update(src, to);
  mutate(img, BS, 3000, 11);
  fs.writeFileSync(at(`${name}.img`), img);
  await setupOk(['volume', 'import', src, '--from', at(`${name}.img`)], { env });
  return src;
}

const peerArgs = (to: string) => (to.startsWith('peer://') ? ['--token-file', token, '--plain'] : []);

function update(src: string, to: string): CliResult {
  const r = runCli(['mirror', 'update', src, '--to', to, ...peerArgs(to)], { env, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`mirror update ${src}: exit ${r.code}: ${r.stderr}`);
  return r;
}

/** Starts a slow update, and stops it with `signal` once the destination `file` acknowledged part of it. */
async function stopMidTransfer(src: string, to: string, file: string, signal: 'SIGINT' | 'SIGKILL'): Promise<void> {
  // (records raw: compressed, the image's blocks would pass the limit at once)
  const child = spawnCli(['mirror', 'update', src, '--to', to, ...peerArgs(to), '--limit-rate', '4M', '--compress', 'none', '-q'], { env });
  const done = finished(child, 120_000);
  const end = Date.now() + 60_000;
  while (ackedIn(file) === 0) {
    if (Date.now() > end) throw new Error('no acknowledgement within a minute');
    await new Promise((r) => setTimeout(r, 20));
  }
  child.kill(signal);
  const r = await done;
  expect(r.code, r.stderr).toBe(signal === 'SIGINT' ? 130 : null);
  expect(ackedIn(file), 'stopped before the transfer committed').toBeGreaterThan(0);
}

/** Every snapshot of `src` and its active disk are on the mirror `file`, byte for byte, and it checks clean. */
async function expectExact(src: string, file: string): Promise<void> {
  const names = await snapshotNamesOf(src, env);
  expect(names.length).toBeGreaterThan(0);
  for (const s of names) expect(await imageSha(`${file}@${s}`, env), s).toBe(await imageSha(`${src}@${s}`, env));
  expect(await imageSha(file, env)).toBe(await imageSha(src, env));
  expect((await checkReportOf(file, env)).ok).toBe(true);
}

describe('a stopped mirror transfer and a mirror no longer as it left it', () => {
  it('the mirror moved away after SIGINT: status says missing, the update drops the transfer and makes a full copy', async () => {
    const dest = at('moved.mirror');
    const src = await mirroredThenChanged('moved', dest);
    await stopMidTransfer(src, dest, dest, 'SIGINT');
    fs.renameSync(dest, at('moved.elsewhere'));
    const status = await inProcessJson<{ relationships: Array<{ state: string }> }>(['mirror', 'status', src, '--json'], { env });
    expect(status.relationships[0].state).toBe('missing');
    const r = update(src, dest);
    expect(r.stdout).toMatch(/dropped the stopped transfer .* no longer at moved\.mirror \(deleted or moved\)/);
    expect(r.stdout).toMatch(/: full transfer to /);
    await expectExact(src, dest);
  });

  it('the mirror deleted after kill -9: a full copy', async () => {
    const dest = at('deleted.mirror');
    const src = await mirroredThenChanged('deleted', dest);
    await stopMidTransfer(src, dest, dest, 'SIGKILL');
    fs.rmSync(dest);
    const r = update(src, dest);
    expect(r.stdout).toMatch(/dropped the stopped transfer/);
    expect(r.stdout).toMatch(/: full transfer to /);
    await expectExact(src, dest);
  });

  it('the mirror copied back over from before the transfer (same file, uuid and CP): the transfer starts over', async () => {
    const dest = at('copied.mirror');
    const src = await mirroredThenChanged('copied', dest);
    const before = fs.readFileSync(dest);
    await stopMidTransfer(src, dest, dest, 'SIGINT');
    const ino = fs.statSync(dest).ino;
    fs.writeFileSync(dest, before); // in place: the same inode
    expect(fs.statSync(dest).ino).toBe(ino);
    const r = update(src, dest);
    expect(r.stdout).toMatch(/dropped the stopped transfer kept at the destination: the destination no longer holds what it acknowledged/);
    expect(r.stdout).not.toMatch(/finished the/);
    await expectExact(src, dest);
  });

  it('a stopped first transfer, then another volume mirrored to the same name: its half-built mirror is dropped, not built on', async () => {
    // before: the second volume's full transfer went into the first one's .NAME.mirror-new: a mirror
    // with the first volume's uuid and size and the second one's snapshots, exit 0, never updatable again
    const dest = at('first.mirror');
    const big = at('first-big.vol');
    writeImage(at('first-big.img'), BLOCKS, BS, 21, 0.1);
    await setupOk(['volume', 'create', big, '--size', `${(BLOCKS * BS) >> 20}M`, '--volume-size', '64M'], { env });
    await setupOk(['volume', 'import', big, '--from', at('first-big.img')], { env });
    await stopMidTransfer(big, dest, dest, 'SIGINT');
    expect(fs.existsSync(at('.first.mirror.mirror-new'))).toBe(true);
    const small = at('first-small.vol');
    writeImage(at('first-small.img'), 1024, BS, 22, 0.1);
    await setupOk(['volume', 'create', small, '--size', '4M'], { env });
    await setupOk(['volume', 'import', small, '--from', at('first-small.img')], { env });
    const r = update(small, dest);
    expect(r.stdout).toMatch(/dropped the stopped transfer .* it was building the mirror of another volume/);
    await expectExact(small, dest);
    const uuid = async (v: string) => (await inProcessJson<{ uuid: string }>(['volume', 'info', v], { env })).uuid;
    expect(await uuid(dest)).toBe(await uuid(small));
  });

  it('a copy of the source (same uuid) mirrored where the original has a stopped transfer: the drop is said, as every other', async () => {
    // before: the copy's own transfer replaced the original's stage and resume files without a word
    const dest = at('clone.mirror');
    const src = await mirroredThenChanged('clone', dest);
    const copy = at('clone-copy.vol');
    fs.copyFileSync(src, copy); // before the original's transfer took its snapshot
    await stopMidTransfer(src, dest, dest, 'SIGINT');
    const r = update(copy, dest);
    expect(r.stdout).toMatch(/: dropped the stopped transfer [0-9a-f-]+ kept at the destination: another transfer begins/);
    expect(r.stdout.split('\n').filter((l) => /dropped/.test(l)), 'said once').toHaveLength(1);
    expect(r.stdout).not.toMatch(/finished the/);
    await expectExact(copy, dest);
  });

  it('the mirror still as it was: the transfer resumes (nothing acknowledged travels again)', async () => {
    const dest = at('kept.mirror');
    const src = await mirroredThenChanged('kept', dest);
    await stopMidTransfer(src, dest, dest, 'SIGKILL');
    const r = update(src, dest);
    expect(r.stdout).toMatch(/finished the .* resumed after \d+ records/);
    expect(r.stdout).not.toMatch(/dropped/);
    await expectExact(src, dest);
  });

  it('through serve peer: the updater killed -9, then ROOT/NAME removed: a full copy', async () => {
    const dir = at('peer-root');
    fs.mkdirSync(dir);
    const child = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env, NODE_ENV: '' }, stdio: ['ignore', 'pipe', 'pipe'] });
    const done = finished(child, 600_000);
    try {
      const port = await listeningPort(child, done);
      const to = `peer://127.0.0.1:${port}/m`;
      const file = path.join(dir, 'm');
      const src = await mirroredThenChanged('peer', to);
      await stopMidTransfer(src, to, file, 'SIGKILL');
      // the daemon notices the connection gone and lets the destination go
      const end = Date.now() + 30_000;
      for (;;) {
        try {
          fs.rmSync(file);
          break;
        } catch (err) {
          if (Date.now() > end) throw err;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      const r = update(src, to);
      expect(r.stdout).toMatch(/dropped the stopped transfer .* \(deleted or moved\)/);
      expect(r.stdout).toMatch(/: full transfer to /);
      await expectExact(src, file);
    } finally {
      child.kill('SIGTERM');
      await done;
    }
  });
});
