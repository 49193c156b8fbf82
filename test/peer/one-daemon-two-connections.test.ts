// A peer daemon serves many connections in one process, and a volume lock file names a
// process: a second connection opening a volume the first holds found its own pid in the
// lock file, took the lock for stale and opened the volume too. A `replicate pull` of a
// NAME that a mirror update was writing read it mid-transfer, and on closing removed the
// lock the update still worked under, so a local command could then open the mirror in
// the middle of its update. Now the second connection is refused as another process is
// (busy, exit 7, one line), the update keeps its lock to the end, and the pull taken
// afterwards is exact.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_BIN, finished, listeningPort, runCli, runCliAsync, sha256, spawnCli, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { makeToken } from './support.js';

const BS = 4096;
const BLOCKS = 6144; // 24 MiB: a few seconds at --limit-rate 6M
const root = tempDir('imgstream-one-daemon-');
const at = (f: string) => path.join(root, f);
const locks = at('locks');
const env = { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_MIRROR_STATE: at('mirrors.json') };
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function ok(args: string[]): string {
  const r = runCli(args, { env, timeoutMs: 120_000 });
  expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(0);
  return r.stdout;
}

const exportHash = (ref: string): string => sha256(runCli(['volume', 'export', ref, '--to', '-'], { env }).stdoutBytes);

async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 30_000;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('two connections to one peer daemon on one volume', () => {
  it('a replicate pull of a mirror being updated is refused (busy), the update keeps its lock, and the next pull is exact', async () => {
    const src = at('src.vol');
    writeImage(at('a.raw'), BLOCKS, BS, 21, 0.1);
    writeImage(at('b.raw'), BLOCKS, BS, 22, 0.1);
    await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`], { env });
    await setupOk(['volume', 'import', src, '--from', at('a.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', src, 'release-1', '--master'], { env });
    const dir = at('peer');
    fs.mkdirSync(dir);
    const token = makeToken(root);
    const daemon = spawn(process.execPath, [CLI_BIN, 'serve', 'peer', '--root', dir, '--listen', '127.0.0.1:0', '--token-file', token, '--plain', '--json'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const ended = finished(daemon, 300_000);
    const peerArgs = ['--token-file', token, '--plain'];
    try {
      const url = `peer://127.0.0.1:${await listeningPort(daemon, ended)}/m`;
      ok(['mirror', 'update', src, '--to', url, ...peerArgs]);
      // a second master whose blocks all changed: a slow incremental into m
      await setupOk(['volume', 'import', src, '--from', at('b.raw'), '-q'], { env });
      await setupOk(['snapshot', 'create', src, 'release-2', '--master'], { env });
      const update = spawnCli(['mirror', 'update', src, '--to', url, ...peerArgs, '--compress', 'none', '--limit-rate', '6M'], { env });
      const updated = finished(update, 120_000);
      let updateEnded = false;
      void updated.then(() => (updateEnded = true));
      await until(() => fs.existsSync(path.join(dir, '.m.mirror-transfer')) || updateEnded, 'the update to be under way');
      const replica = at('replica.vol');
      const pull = await runCliAsync(['replicate', 'pull', replica, '--from', url, ...peerArgs], { env, timeoutMs: 60_000 });
      // the update still holds the mirror: a local command is refused too
      const look = await runCliAsync(['snapshot', 'list', path.join(dir, 'm')], { env, timeoutMs: 60_000 });
      expect(updateEnded, 'the update ended before the pull and the look were done').toBe(false);
      expect(pull.code, pull.stderr).toBe(7);
      expect(pull.stderr.trim().split('\n'), pull.stderr).toHaveLength(1);
      expect(pull.stderr).toMatch(/^imgstream: .*in use by imgstream process \d+/);
      expect(fs.existsSync(replica), 'the refused pull created its replica').toBe(false);
      expect(look.code, look.stderr).toBe(7);
      expect(look.stderr).toMatch(/in use by imgstream process \d+ \(serve peer\)/);
      const u = await updated;
      expect(u.code, u.stderr).toBe(0);
      // the mirror is exact, and so is the pull now
      for (const n of ['release-1', 'release-2']) expect(exportHash(`${path.join(dir, 'm')}@${n}`), n).toBe(exportHash(`${src}@${n}`));
      ok(['replicate', 'pull', replica, '--from', url, ...peerArgs]);
      expect(exportHash(replica)).toBe(exportHash(`${src}@release-2`));
    } finally {
      daemon.kill('SIGTERM');
      await ended;
    }
  }, 180_000);
});
