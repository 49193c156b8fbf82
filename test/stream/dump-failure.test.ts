// A dump that fails after taking its snapshot (its reader went away: stdout closed early)
// deletes that snapshot, on a volume it opened and on one a server holds: a nightly job
// failing every night must not pile up snapshots (and their blocks) until the slots run
// out. The catalog records nothing, and the next dump works. A raw export to such a pipe
// ends in one line too (it was an internal error).
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI_BIN, cliJson, cliOk, finished, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { startServer } from '../nbd/support.js';

const BS = 4096;
const root = tempDir('imgstream-dump-failure-');
const locks = path.join(root, 'locks');
const catalog = path.join(root, 'catalog.json');
const env = { IMGSTREAM_LOCK_DIR: locks, IMGSTREAM_CATALOG: catalog };
const at = (n: string) => path.join(root, n);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const snapshots = (vol: string): string[] => cliJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', vol], { env }).snapshots.map((s) => s.name);
const recorded = (): number => (fs.existsSync(catalog) ? (JSON.parse(fs.readFileSync(catalog, 'utf8')) as { dumps: unknown[] }).dumps.length : 0);

/** `imgstream dump VOL --level L --to - | head -c 4096`: the dump's stdout closes after 4 KiB. */
async function dumpIntoClosedPipe(vol: string, level: number): Promise<{ code: number | null; stderr: string }> {
  const child = spawn('sh', ['-c', `"${process.execPath}" "${CLI_BIN}" dump "${vol}" --level ${level} --to - | head -c 4096 >/dev/null`], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const r = await finished(child, 60_000);
  return { code: r.code, stderr: r.stderr };
}

describe('a failed dump', () => {
  it('deletes the snapshot it took, on a volume it opened and through a server; nothing is recorded; the next dump works', async () => {
    const vol = at('v.vol');
    // random bytes do not compress: the stream (8 MiB) cannot fit in the pipe's buffer, so
    // the dump always meets the closed pipe (a compressible image made a 31 KiB stream that
    // sometimes went into the buffer whole before head exited, and the dump succeeded)
    fs.writeFileSync(at('v.raw'), crypto.randomBytes(2048 * BS));
    await setupOk(['volume', 'create', vol, '--size', String(2048 * BS)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('v.raw')], { env });
    cliOk(['dump', vol, '--level', '0', '--to', at('v.l0')], { env });
    const before = snapshots(vol);
    expect(before).toHaveLength(1);
    for (let i = 0; i < 3; i++) {
      const r = await dumpIntoClosedPipe(vol, 0);
      expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(/^imgstream: .*(EPIPE|closed|broken pipe)/i);
      expect(snapshots(vol), `failed dump ${i + 1}: its snapshot is gone`).toEqual(before);
    }
    expect(recorded()).toBe(1);
    // through a server: the dump's snapshot is taken (and pinned) by the server, then dropped
    const server = await startServer(vol, ['--socket', at('v.sock')], locks);
    try {
      for (let i = 0; i < 2; i++) {
        const r = await dumpIntoClosedPipe(vol, 0);
        expect(r.stderr).toMatch(/^imgstream: /);
        expect(snapshots(vol), `failed served dump ${i + 1}: its snapshot is gone`).toEqual(before);
      }
      expect(recorded()).toBe(1);
      const ok = cliJson<{ level: number; top: string }>(['dump', vol, '--level', '1', '--to', at('v.l1')], { env });
      expect(ok.level).toBe(1);
      expect(snapshots(vol)).toEqual([...before, ok.top]);
    } finally {
      await server.stop();
    }
    expect(recorded()).toBe(2);
    cliOk(['verify', at('v.l0'), at('v.l1')], { env });
  }, 120_000);
});

describe('volume export to a pipe whose reader goes away', () => {
  it('ends with one line and exit 10, and the volume is as it was', async () => {
    const vol = at('e.vol');
    writeImage(at('e.raw'), 4096, BS, 2, 0);
    await setupOk(['volume', 'create', vol, '--size', String(4096 * BS)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('e.raw')], { env });
    const before = fs.readFileSync(vol);
    const child = spawn('sh', ['-c', `"${process.execPath}" "${CLI_BIN}" volume export "${vol}" --to - | head -c 4096 >/dev/null`], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
    const r = await finished(child, 60_000);
    expect(r.stderr.trim().split('\n'), r.stderr).toHaveLength(1);
    expect(r.stderr).toMatch(/^imgstream: writing the output: EPIPE: the reading end of the pipe went away$/m);
    expect(fs.readFileSync(vol).equals(before), 'the volume file changed').toBe(true);
    // its exit code, without the shell in between
    const direct = spawn(process.execPath, [CLI_BIN, 'volume', 'export', vol, '--to', '-'], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    direct.stdout!.once('data', () => direct.stdout!.destroy());
    const d = await finished(direct, 60_000);
    expect(d.code, d.stderr).toBe(10);
    expect(d.stderr.trim().split('\n')).toHaveLength(1);
  }, 60_000);
});
