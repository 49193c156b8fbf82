// The volume lock under contention. A lock file is created whole (written aside, then
// linked into place): created empty and then written, a contender reading it in between
// took it for stale, removed it and held the lock too. Here: a lock file another process
// is still writing (empty, young) is respected, an empty one left long ago is taken over,
// what a process killed while creating it left is removed, and real processes taking and releasing one lock in a tight loop never hold it at once.
// Processes given different lock directories (a service with its own /tmp, a shell with
// IMGSTREAM_LOCK_DIR) still exclude each other: each lock has its guard in the default one.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BusyError } from '../../src/core/errors.js';
import { VolumeLock } from '../../src/volume/volume-lock.js';
import { CLI_BIN, finished, REPO_ROOT } from '../support/cli.js';
import { startServer } from '../nbd/support.js';
import { tempDir } from '../support/images.js';

const root = tempDir('imgstream-volume-lock-');
const locks = path.join(root, 'locks');
process.env.IMGSTREAM_LOCK_DIR = locks;
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function lockFileFor(file: string): string {
  const st = fs.statSync(file);
  return path.join(locks, `${st.dev}-${st.ino}.lock`);
}

describe('the volume lock', () => {
  it('an empty IMGSTREAM_LOCK_DIR is no value: the lock goes to the default directory, not the working one', () => {
    const vol = path.join(root, 'empty-dir.vol');
    fs.writeFileSync(vol, '');
    process.env.IMGSTREAM_LOCK_DIR = '';
    try {
      const l = VolumeLock.acquire(vol, fs.statSync(vol));
      try {
        expect(path.isAbsolute(l.file), l.file).toBe(true);
        expect(path.dirname(l.file)).not.toBe(process.cwd());
      } finally {
        l.release();
      }
    } finally {
      process.env.IMGSTREAM_LOCK_DIR = locks;
    }
  });

  it('many locks held at once add one exit listener, not one each (past 10, Node printed a MaxListenersExceededWarning: a multiplexed dump of three volumes to five tapes did)', () => {
    const vols = Array.from({ length: 12 }, (_, i) => path.join(root, `many-${i}.vol`));
    for (const v of vols) fs.writeFileSync(v, '');
    const before = process.listenerCount('exit');
    const held = vols.map((v) => VolumeLock.acquire(v, fs.statSync(v)));
    try {
      expect(process.listenerCount('exit')).toBeLessThanOrEqual(before + 1);
      for (const v of vols) expect(fs.existsSync(lockFileFor(v))).toBe(true);
    } finally {
      for (const l of held) l.release();
    }
    for (const v of vols) expect(fs.existsSync(lockFileFor(v))).toBe(false);
  });

  it('leaves a lock file that is still being written to its writer, and takes over one left empty long ago', () => {
    const vol = path.join(root, 'a.vol');
    fs.writeFileSync(vol, '');
    fs.mkdirSync(locks, { recursive: true });
    const lockFile = lockFileFor(vol);
    fs.writeFileSync(lockFile, ''); // another process created it and has not written its pid yet
    expect(() => VolumeLock.acquire(vol, fs.statSync(vol))).toThrow(BusyError);
    expect(fs.readFileSync(lockFile, 'utf8')).toBe('');
    const old = new Date(Date.now() - 60_000);
    fs.utimesSync(lockFile, old, old); // its writer died before writing: stale
    const dead = spawnSync('true').pid!; // a process killed while creating the lock left its file beside
    fs.writeFileSync(`${lockFile}.new-${dead}`, `${dead} 1`);
    const lock = VolumeLock.acquire(vol, fs.statSync(vol));
    expect(fs.readFileSync(lockFile, 'utf8')).toMatch(new RegExp(`^${process.pid} `));
    lock.release();
    expect(fs.existsSync(lockFile)).toBe(false);
    expect(fs.readdirSync(locks)).toEqual([]); // nothing of its own left beside
  });

  it('keeps a served volume from a command that looks for locks in another directory, or in none', async () => {
    const vol = path.join(root, 's.vol');
    const dirA = path.join(root, 'locks-a');
    const imgstream = (args: string[], lockDir: string | null) => {
      const env: NodeJS.ProcessEnv = { ...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true' };
      delete env.IMGSTREAM_LOCK_DIR;
      if (lockDir !== null) env.IMGSTREAM_LOCK_DIR = lockDir;
      return finished(spawn(process.execPath, [CLI_BIN, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] }), 60_000);
    };
    expect((await imgstream(['volume', 'create', vol, '--size', '4M'], dirA)).code).toBe(0);
    const server = await startServer(vol, ['--socket', path.join(root, 's.sock'), '--journal'], dirA);
    try {
      // found by its guard: the request goes to the server (which journals it)
      const routed = await imgstream(['snapshot', 'create', vol, 'from-b'], path.join(root, 'locks-b'));
      expect(routed.code, routed.stderr).toBe(0);
      // its control socket out of reach (as in another /tmp): refused, where it opened the volume beside the server and replayed its journal
      for (const f of fs.readdirSync(dirA)) if (f.endsWith('.ctl')) fs.rmSync(path.join(dirA, f));
      for (const dir of [path.join(root, 'locks-b'), null]) {
        const r = await imgstream(['snapshot', 'create', vol, 'beside'], dir);
        expect(r.code, r.stderr).toBe(7);
        expect(r.stderr.trim().split('\n')).toEqual([`imgstream: ${vol}: volume is being served by imgstream process ${server.child.pid} (write through its NBD export, or stop the server first)`]);
      }
    } finally {
      await server.stop();
    }
    expect((await imgstream(['volume', 'check', vol], dirA)).code).toBe(0);
    expect((await imgstream(['snapshot', 'list', vol, '--json'], null)).stdout).toMatch(/"from-b"/);
    // a server of an earlier version locked in $TMPDIR/imgstream-locks only (an upgrade under it): found there
    const old = spawn('sleep', ['30']);
    try {
      const st = fs.statSync(vol);
      const legacy = path.join(os.tmpdir(), 'imgstream-locks');
      fs.mkdirSync(legacy, { recursive: true });
      const start = fs.readFileSync(`/proc/${old.pid}/stat`, 'utf8').split(') ')[1].split(' ')[19];
      fs.writeFileSync(path.join(legacy, `${st.dev}-${st.ino}.lock`), `${old.pid} ${start}`);
      const r = await imgstream(['snapshot', 'create', vol, 'beside-old'], null);
      expect(r.code, r.stderr).toBe(7);
      expect(r.stderr).toMatch(new RegExp(`in use by imgstream process ${old.pid}`));
      fs.rmSync(path.join(legacy, `${st.dev}-${st.ino}.lock`));
    } finally {
      old.kill();
    }
  }, 60_000);

  it('is held by one process at a time while four take and release it in a tight loop', async () => {
    const vol = path.join(root, 'b.vol');
    fs.writeFileSync(vol, '');
    const log = path.join(root, 'holders.log');
    const script = `
      import fs from 'node:fs';
      const { VolumeLock } = await import(${JSON.stringify(path.join(REPO_ROOT, 'dist', 'src', 'volume', 'volume-lock.js'))});
      const vol = ${JSON.stringify(vol)};
      let held = 0;
      while (held < 150) {
        let lock;
        try { lock = VolumeLock.acquire(vol, fs.statSync(vol)); } catch (err) { if (err.code === 'busy') continue; throw err; }
        fs.appendFileSync(${JSON.stringify(log)}, process.pid + ' in\\n');
        fs.appendFileSync(${JSON.stringify(log)}, process.pid + ' out\\n');
        lock.release();
        held++;
      }`;
    const children = Array.from({ length: 4 }, () => spawn(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, IMGSTREAM_LOCK_DIR: locks }, stdio: ['ignore', 'pipe', 'pipe'] }));
    const results = await Promise.all(children.map((c) => finished(c, 120_000)));
    for (const r of results) expect(r.code, r.stderr).toBe(0);
    const lines = fs.readFileSync(log, 'utf8').trim().split('\n');
    expect(lines).toHaveLength(4 * 150 * 2);
    for (let i = 0; i < lines.length; i += 2) {
      const [pid, what] = lines[i].split(' ');
      expect(what, `line ${i + 1}: a second holder came in`).toBe('in');
      expect(lines[i + 1], `line ${i + 2}: another process entered while ${pid} held the lock`).toBe(`${pid} out`);
    }
  });
});
