// A write to stdout the operating system refuses, after the command did its work: a full
// disk (`> /dev/full`, ENOSPC) or a pipe whose reader went away (`| head -0`, EPIPE). One
// line on stderr saying so and that the command completed, exit 10 (io); never a stack
// trace (oclif rethrew the error: exit 1 after the work was done) nor Node's exit 13 (a
// flush waiting for a 'drain' a failed stdout never emits). A command that fails keeps
// its own line and exit code. A command that runs until stopped (mirror start, protect,
// serve nbd, serve peer) ran on, logging to nobody, until killed: it stops as SIGTERM
// stops it, then the same line and exit 10.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, finished, spawnCli, type CliResult } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { expectOneLineError, pool } from '../support/stream-cli.js';
import { makeToken } from '../peer/support.js';

const root = tempDir('imgstream-cli-output-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json'), HOME: root, TMPDIR: root };
const vol = path.join(root, 'v.vol');

/** `imgstream ...args > /dev/full` */
function toFullDisk(args: string[], timeout = 60_000): CliResult {
  const full = fs.openSync('/dev/full', 'w');
  try {
    const r = spawnSync(process.execPath, [CLI_BIN, ...args], { env: { ...process.env, ...env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true', NODE_ENV: '', IMGSTREAM_DEBUG: '' }, stdio: ['ignore', full, 'pipe'], timeout });
    return { code: r.status, signal: r.signal, stdout: '', stderr: r.stderr.toString(), stdoutBytes: Buffer.alloc(0) };
  } finally {
    fs.closeSync(full);
  }
}

/** `imgstream ...args | head -0`: the reading end closed before the command starts. */
function toClosedPipe(args: string[]): Promise<CliResult> {
  const child = spawnCli(args, { env });
  child.stdout!.destroy();
  return finished(child);
}

const snapshots = (): string[] => JSON.parse(spawnSync(process.execPath, [CLI_BIN, 'snapshot', 'list', vol, '--json'], { env: { ...process.env, ...env } }).stdout.toString()).snapshots.map((s: { name: string }) => s.name);

beforeAll(async () => {
  await setupOk(['volume', 'create', vol, '--size', '1M'], { env });
  await setupOk(['snapshot', 'create', vol, 'a'], { env });
});
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

const reading = [['volume', 'info', vol], ['snapshot', 'list', vol], ['snapshot', 'list', vol, '--json'], ['catalog', 'list'], ['volume', 'check', vol], ['image', vol, 'a'], ['--help'], ['snapshot', 'create', '--help']];

describe('a write to stdout that fails', () => {
  it('on a full disk is one line, exit 10, after the work is done', async () => {
    await pool(2, reading, async (args) => {
      const r = toFullDisk(args);
      expectOneLineError(r, args.join(' '), 10, /^imgstream: writing the output: ENOSPC: no space left on device \(the command itself completed\)$/);
    });
    const r = toFullDisk(['snapshot', 'create', vol, 'b']);
    expectOneLineError(r, 'snapshot create', 10, /ENOSPC.*the command itself completed/);
    expect(snapshots()).toContain('b');
    // a command that fails says why, with its own code; its --json error object is what failed to be written
    expectOneLineError(toFullDisk(['volume', 'info', path.join(root, 'none.vol'), '--json']), 'failing --json', 3, /no such volume/);
    // an image or stream to stdout: the same words, by cause (it said "the reading end of the pipe went away" for a full disk too)
    expectOneLineError(toFullDisk(['volume', 'export', vol, '-t', '-']), 'volume export -t - > /dev/full', 10, /^imgstream: writing the output: ENOSPC: no space left on device$/);
    expectOneLineError(toFullDisk(['dump', vol, '--level', '0', '-t', '-', '-q']), 'dump -t - > /dev/full', 10, /^imgstream: writing the output: ENOSPC: no space left on device/);
  });

  it('to a pipe whose reader went away (EPIPE) is one line, exit 10, as volume export -t - is (not 13)', async () => {
    const closed = [...reading, ['snapshot', 'create', vol, 'c']];
    const results = await pool(1, closed, async (args) => [args, await toClosedPipe(args)] as const);
    for (const [args, r] of results) expectOneLineError(r, args.join(' '), 10, /^imgstream: writing the output: EPIPE: the reading end of the pipe went away \(the command itself completed\)$/);
    expect(snapshots()).toContain('c');
    // a stream to stdout: its own line, the same code
    expectOneLineError(await toClosedPipe(['volume', 'export', vol, '-t', '-']), 'volume export -t -', 10, /^imgstream: writing the output: EPIPE: the reading end of the pipe went away$/);
  });
});

/** A long-running command's result: exit 10, one error line (its log's own lines are time-stamped, never "imgstream: ..."), no stack trace. */
function expectStoppedByOutput(r: CliResult, what: string, pattern: RegExp): void {
  expect(r.signal, `${what}: killed by a signal (it ran on: stderr ${r.stderr.trim()})`).toBeNull();
  expect(r.code, `${what}: exit code (stderr: ${r.stderr.trim()})`).toBe(10);
  const errors = r.stderr.split('\n').filter((l) => l.startsWith('imgstream:'));
  expect(errors, `${what}: stderr`).toHaveLength(1);
  expect(errors[0], `${what}: stderr`).toMatch(pattern);
  expect(r.stderr, `${what}: stack trace on stderr`).not.toMatch(/^\s+at\s/m);
}

describe('a write to stdout that fails in a command that runs until stopped', () => {
  it('stops mirror start, serve nbd, protect and serve peer as SIGTERM does: one line, exit 10', async () => {
    const src = path.join(root, 'long.vol');
    await setupOk(['volume', 'create', src, '--size', '1M'], { env });
    // mirror start | head -0: its first update done (the mirror made), then stopped, not run every hour
    const mirror = path.join(root, 'long.mirror');
    const child = spawnCli(['mirror', 'start', src, '--to', mirror, '--every', '1h'], { env: { ...env, IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') } });
    child.stdout!.destroy();
    const started = await finished(child, 30_000);
    expectStoppedByOutput(started, 'mirror start | head -0', /^imgstream: writing the output: EPIPE: the reading end of the pipe went away \(so it stopped, as on SIGTERM\)$/);
    expect(started.stderr).toMatch(/stopped by a failed write of its output/);
    expect(fs.existsSync(mirror), 'the update that ran completed').toBe(true);
    // serve nbd --journal > /dev/full: stopped with its last CP (its journal kept, for protect below)
    const served = toFullDisk(['serve', 'nbd', src, '--socket', path.join(root, 'long.sock'), '--journal'], 30_000);
    expectStoppedByOutput(served, 'serve nbd > /dev/full', /^imgstream: writing the output: ENOSPC: no space left on device \(so it stopped, as on SIGTERM\)$/);
    expect(fs.existsSync(`${src}.journal`)).toBe(true);
    // protect > /dev/full: its seed's line failed; the seed stays at the destination
    const dest = path.join(root, 'long.cdp');
    expectStoppedByOutput(toFullDisk(['protect', src, '--to', dest], 30_000), 'protect > /dev/full', /^imgstream: writing the output: ENOSPC: .*\(so it stopped, as on SIGTERM\)$/);
    expect(fs.existsSync(path.join(dest, 'protect.json'))).toBe(true);
    const peerRoot = path.join(root, 'long-peer');
    fs.mkdirSync(peerRoot);
    const peer = toFullDisk(['serve', 'peer', '--root', peerRoot, '--listen', '127.0.0.1:0', '--token-file', makeToken(root), '--plain'], 30_000);
    expectStoppedByOutput(peer, 'serve peer > /dev/full', /^imgstream: writing the output: ENOSPC: .*\(so it stopped, as on SIGTERM\)$/);
  });
});
