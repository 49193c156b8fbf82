// Ctrl-C (SIGINT), a closed terminal (SIGHUP) or kill (SIGTERM) during a restore into a
// new volume: the hidden volume it was building (".VOL.restoring-PID") is removed, the
// target does not appear, and it exits 130, 129 or 143 with one line. An export (which
// writes synchronously, so a signal ends it where it is) and kill -9 of either leave the
// hidden file: the next export or restore of that name removes it. Real processes,
// stopped once their hidden file exists.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliOk, finished, sleep, spawnCli, stderrLines, writeImage, type CliResult } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { changesOutsideFreeSpace } from '../support/stream-cli.js';

const BS = 4096;
const root = tempDir('imgstream-stop-cleanup-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
const vol = path.join(root, 'v.vol');
const stream = path.join(root, 'v.l0');
const EXIT = { SIGTERM: 143, SIGINT: 130, SIGHUP: 129 } as const;

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  // 64 MiB of random blocks: long enough to be caught writing
  writeImage(path.join(root, 'v.raw'), 16384, BS, 7, 0.05);
  await setupOk(['volume', 'create', vol, '--size', String(16384 * BS)], { env });
  await setupOk(['volume', 'import', vol, '--from', path.join(root, 'v.raw'), '-q'], { env });
  cliOk(['dump', vol, '--level', '0', '--to', stream, '--compress', 'none', '-q'], { env });
}, 120_000);

let out = '';
/** A fresh output directory for each test: what one leaves must not count for another. */
const useDir = (name: string) => {
  out = path.join(root, name);
  fs.mkdirSync(out);
};
const hidden = (): string[] => fs.readdirSync(out).filter((n) => n.startsWith('.'));

/** Runs the command and sends `signal` once its hidden file appears; null when it finished first. */
async function stopWhileWriting(args: string[], signal: NodeJS.Signals): Promise<CliResult | null> {
  const child = spawnCli(args, { env });
  const done = finished(child, 60_000);
  while (child.exitCode === null && hidden().length === 0) await sleep(2);
  if (child.exitCode !== null) return null;
  child.kill(signal);
  const r = await done;
  return r.code === 0 ? null : r;
}

async function expectCleanStop(args: string[], target: string, signal: keyof typeof EXIT): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    fs.rmSync(target, { force: true });
    const r = await stopWhileWriting(args, signal);
    if (r === null) continue; // it finished before the signal: again
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(EXIT[signal]);
    expect(stderrLines(r)).toEqual([`imgstream: stopped by ${signal}: the unfinished output was removed, nothing else changed`]);
    expect(hidden(), 'no hidden file left').toEqual([]);
    expect(fs.existsSync(target), 'no target').toBe(false);
    return;
  }
  throw new Error(`${args.join(' ')} finished five times before ${signal} reached it`);
}

describe('stopped by a signal', () => {
  it('a restore into a new volume removes the volume it was building (SIGTERM, SIGINT, SIGHUP)', async () => {
    useDir('restore');
    for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) await expectCleanStop(['restore', '--from', stream, '--to', path.join(out, 'r.vol'), '-q'], path.join(out, 'r.vol'), sig);
  }, 120_000);

  it('an export stopped outright leaves its hidden file, and the next export of that name removes it', async () => {
    // an export writes synchronously: a signal ends it where it is (kill -9 alike)
    useDir('export');
    const target = path.join(out, 'k.raw');
    let left: string[] = [];
    for (let attempt = 0; attempt < 5 && left.length === 0; attempt++) {
      fs.rmSync(target, { force: true });
      const r = await stopWhileWriting(['volume', 'export', vol, '--to', target, '-q'], attempt % 2 ? 'SIGKILL' : 'SIGTERM');
      if (r !== null) left = hidden();
    }
    expect(left).toEqual([expect.stringMatching(/^\.k\.raw\.imgstream-\d+$/)]);
    fs.rmSync(target, { force: true });
    cliOk(['volume', 'export', vol, '--to', target, '-q'], { env });
    expect(hidden()).toEqual([]);
    expect(fs.readFileSync(target).equals(fs.readFileSync(path.join(root, 'v.raw')))).toBe(true);
  }, 120_000);

  it('after kill -9, the next restore to that name removes the volume the killed one was building', async () => {
    useDir('restore9');
    const target = path.join(out, 'r.vol');
    let left: string[] = [];
    for (let attempt = 0; attempt < 5 && left.length === 0; attempt++) {
      const r = await stopWhileWriting(['restore', '--from', stream, '--to', target, '-q'], 'SIGKILL');
      if (r !== null) left = hidden();
      else fs.rmSync(target, { force: true });
    }
    expect(left.length).toBeGreaterThan(0);
    cliOk(['restore', '--from', stream, '--to', target, '-q'], { env });
    expect(hidden()).toEqual([]);
  }, 120_000);

  it('a restore onto an existing volume says the volume is as its last CP left it, and it is', async () => {
    useDir('onto');
    // a level 1 on the level 0: a few blocks changed
    const raw = fs.readFileSync(path.join(root, 'v.raw'));
    raw.fill(0x5a, 0, 64 * BS);
    fs.writeFileSync(path.join(out, 'changed.raw'), raw);
    await setupOk(['volume', 'import', vol, '--from', path.join(out, 'changed.raw'), '-q'], { env });
    cliOk(['dump', vol, '--level', '1', '--to', path.join(out, 'v.l1'), '--compress', 'none', '-q'], { env });
    const target = path.join(out, 'r.vol');
    cliOk(['restore', '--from', stream, '--to', target, '-q'], { env });
    const before = fs.readFileSync(target);
    const l1 = fs.readFileSync(path.join(out, 'v.l1'));
    for (const sig of ['SIGINT', 'SIGTERM'] as const) {
      // its stream from a pipe held open: stopped while it waits for the rest
      const child = spawnCli(['restore', '--from', '-', '--to', target, '-q'], { env, stdin: 'pipe' });
      const done = finished(child, 60_000);
      child.stdin!.write(l1.subarray(0, Math.min(l1.length - 1, 64 << 10)));
      await sleep(1000);
      child.kill(sig);
      const r = await done;
      expect(r.code, r.stderr).toBe(EXIT[sig]);
      expect(stderrLines(r)).toEqual([`imgstream: stopped by ${sig}: ${target} is as its last CP left it`]);
      expect(changesOutsideFreeSpace(before, target).violations).toEqual([]);
      expect(hidden()).toEqual([]);
    }
    // and the restore then goes on from there
    cliOk(['restore', '--from', path.join(out, 'v.l1'), '--to', target, '-q'], { env });
  }, 120_000);
});

