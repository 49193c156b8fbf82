// Commands on a volume while `imgstream serve nbd` serves it and real clients write to
// it (qemu-io in a loop, timed CPs every 0.2 s): snapshot create/list/delete, image,
// volume info, dumps at level 0 and 1, exports of snapshots and of the active file
// system all go through the server's control socket (or read pinned snapshots through a
// lockless view) instead of failing with "busy". Afterwards the volume checks clean, the
// answers given while served equal those given by the volume opened directly, and the
// dumps taken while served restore to snapshots byte-identical to the source's. Also: a
// flushed write is in the next snapshot, a dump's pins stop deletes and vanish when the
// dump is killed -9, a server killed -9 leaves a control socket that nothing trips on,
// a read-only server refuses changes but serves reads, and a dump of a shadow snapshot
// whose blocks the allocator reuses while it reads fails instead of sending mixed data.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomImage, rng, tempDir } from '../support/images.js';
import { inProcessJson, inProcessOk, setupOk } from '../support/in-process.js';
import { spawnCli } from '../support/cli.js';
import { CLI_BIN, cli, missingBinaries, qemuIo, run, startServer, type RunResult, type RunningServer } from '../nbd/support.js';
import { Volume } from '../../src/volume/volume.js';

const missing = missingBinaries(['qemu-io']);
if (missing.length) console.warn(`served-volume tests skipped: ${missing.join(', ')} not installed (apt-get install qemu-utils)`);

const BS = 4096;
const SIZE = 32 << 20;
/** The writer loop writes below this offset; the flushed-write test above it. */
const WRITER_END = 24 << 20;
const FLUSHED_AT = 28 << 20;
const FLUSHED_LEN = 300_000;
const root = tempDir('imgstream-served-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** `imgstream ...args`, whatever its exit. */
function imgstream(args: string[]): Promise<RunResult> {
  return run(process.execPath, [CLI_BIN, ...args], { env: { IMGSTREAM_LOCK_DIR: locks } });
}

async function json<T = any>(args: string[]): Promise<T> {
  return JSON.parse((await cli([...args, '--json'], locks)).stdout) as T;
}

/**
 * `volume export REF` into `file`, read back. A check run here, not as a process (it goes
 * through the server's control socket all the same), unless `asProcess`: the tests about
 * exports while served run one of each kind as a process.
 */
async function exported(ref: string, file: string, asProcess = false): Promise<Buffer> {
  fs.rmSync(at(file), { force: true });
  const args = ['volume', 'export', ref, '--to', at(file)];
  if (asProcess) await cli(args, locks);
  else await inProcessOk(args, { env });
  return fs.readFileSync(at(file));
}

/** qemu-io writing pseudo-random 64 KiB pieces below WRITER_END, one process after another, until stopped. */
function startWriter(uri: string) {
  let stop = false;
  let rounds = 0;
  const random = rng(77);
  const done = (async () => {
    while (!stop) {
      const cmds: string[] = [];
      for (let i = 0; i < 12; i++) {
        const off = Math.floor(random() * (WRITER_END / 65536)) * 65536 + Math.floor(random() * 4096);
        cmds.push(`write -P 0x${(1 + Math.floor(random() * 254)).toString(16)} ${off} 65536`);
      }
      await qemuIo(uri, cmds, ['-t', 'writeback']);
      rounds++;
    }
  })();
  return {
    get rounds() {
      return rounds;
    },
    /** Resolves once `n` more rounds of writes have been acknowledged. */
    async more(n: number) {
      const target = rounds + n;
      while (rounds < target) await new Promise((r) => setTimeout(r, 20));
    },
    async stop() {
      stop = true;
      await done;
    },
  };
}

describe.skipIf(missing.length > 0)(`commands while serve nbd serves the volume${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  const vol = at('v.vol');
  const catalog = at('catalog.json');
  let server: RunningServer;
  let writer: ReturnType<typeof startWriter>;
  const served: Record<string, any> = {};

  beforeAll(async () => {
    fs.mkdirSync(root, { recursive: true });
    fs.writeFileSync(at('image.raw'), randomImage(SIZE / BS, BS, 5, 0.3));
    await setupOk(['volume', 'create', vol, '--size', String(SIZE), '--volume-size', '512M'], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    server = await startServer(vol, ['--socket', at('v.sock'), '--cp-interval', '0.2'], locks);
    writer = startWriter(server.info.uri);
    await writer.more(1);
  });

  afterAll(async () => {
    await writer?.stop().catch(() => {});
    if (server && server.child.exitCode === null) await server.kill9();
  });

  it('advertises a control socket (mode 0600) in the lock file', () => {
    const lockFile = fs.readdirSync(locks).find((f) => f.endsWith('.lock'))!;
    const text = fs.readFileSync(path.join(locks, lockFile), 'utf8');
    const control = /^control=(.*)$/m.exec(text)?.[1];
    expect(text.split('\n')[0].trim().split(' ')[0]).toBe(String(server.child.pid));
    expect(text).toMatch(/^served=rw$/m);
    expect(control).toBe(path.join(locks, lockFile.replace(/\.lock$/, '.ctl')));
    const st = fs.statSync(control!);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o600);
  });

  it('takes, lists and renames snapshots, evaluates images and reports info while a client writes', async () => {
    const s1 = await json(['snapshot', 'create', vol, 's1']);
    await writer.more(2);
    const s2 = await inProcessJson(['snapshot', 'create', vol, 's2'], { env });
    await writer.more(2);
    await setupOk(['snapshot', 'create', vol, 'tmp-name'], { env });
    await cli(['snapshot', 'rename', vol, 'tmp-name', 's3'], locks);
    // every snapshot is the state of its own CP
    expect(s2.generation).toBeGreaterThan(s1.generation);
    const list = await json(['snapshot', 'list', vol]);
    expect(list.snapshots.map((s: any) => s.name)).toEqual(['s1', 's2', 's3']);
    const img = await json(['image', vol, 's2 - s1']);
    expect(img.expression).toBe('s2 - s1');
    expect(img.blocks, 'blocks written between s1 and s2').toBeGreaterThan(0);
    expect(img.bytes).toBe(img.blocks * BS);
    const info = await json(['volume', 'info', vol]);
    expect(info.path).toBe(vol);
    expect(info.snapshots).toBe(3);
    expect(info.generation).toBeGreaterThan(s2.generation);
    const text = (await cli(['snapshot', 'list', vol], locks)).stdout;
    expect(text).toMatch(/^s1 +\d{4}-/m);
  });

  it('a lockless view opens consistently while CPs, snapshots and writes go on', async () => {
    let last = 0;
    for (let i = 0; i < 16; i++) {
      const churn = setupOk(['snapshot', i % 2 ? 'delete' : 'create', vol, 'churn'], { env });
      const view = Volume.openView(vol);
      try {
        const names = view.snapshots().map((s) => s.name);
        expect(names.slice(0, 3)).toEqual(['s1', 's2', 's3']);
        expect(view.rootRecord.generation).toBeGreaterThanOrEqual(last);
        last = view.rootRecord.generation;
        // a snapshot's plane holds as many blocks as when it was taken
        const s1 = view.snapshot('s1');
        expect(view.countPlane(view.layout.snapshotPlane(s1.slot))).toBe(s1.blocks);
      } finally {
        view.close();
      }
      await churn;
    }
  });

  it('a write the client flushed is in the snapshot taken after it', async () => {
    await qemuIo(server.info.uri, [`write -P 0xab ${FLUSHED_AT} ${FLUSHED_LEN}`, 'flush'], ['-t', 'writeback']);
    await setupOk(['snapshot', 'create', vol, 'flushed'], { env });
    const img = await exported(`${vol}@flushed`, 'flushed.raw');
    expect(img.subarray(FLUSHED_AT, FLUSHED_AT + FLUSHED_LEN).equals(Buffer.alloc(FLUSHED_LEN, 0xab))).toBe(true);
    served.flushed = img;
  });

  it('dumps at level 0 and 1 and exports snapshots and the active file system', async () => {
    const l0 = await json(['dump', vol, '--level', '0', '--snapshot', 's1', '--to', at('l0.stream'), '--catalog', catalog]);
    expect(l0.top).toBe('s1');
    await writer.more(1);
    // no --snapshot: the server takes the dump's snapshot
    const l1 = await json(['dump', vol, '--level', '1', '--to', at('l1.stream'), '--catalog', catalog]);
    expect(l1.base).toBe('s1');
    expect(l1.top).toMatch(/^dump-l1-/);
    expect(l1.snapshots).toEqual(['s2', 's3', 'flushed', l1.top]);
    served.l1top = l1.top;
    const dry = await json(['dump', vol, '--level', '2', '--dry-run', '--catalog', catalog]);
    expect(dry.expression).toBe(`active - ${l1.top}`);
    served.s2 = await exported(`${vol}@s2`, 's2-served.raw');
    served.top = await exported(`${vol}@${l1.top}`, 'top-served.raw', true);
    // the active file system goes out as a temporary snapshot, deleted afterwards
    const active = await exported(vol, 'active-served.raw', true);
    expect(active.length).toBe(SIZE);
    expect(active.subarray(FLUSHED_AT, FLUSHED_AT + FLUSHED_LEN).equals(Buffer.alloc(FLUSHED_LEN, 0xab))).toBe(true);
    const names = (await inProcessJson(['snapshot', 'list', vol], { env })).snapshots.map((s: any) => s.name);
    expect(names).toEqual(['s1', 's2', 's3', 'flushed', l1.top]);
  });

  it('a dump pins the snapshots it reads: no delete, rename or making a shadow one until it ends; a dump killed -9 leaves no pin', async () => {
    await setupOk(['snapshot', 'create', vol, 'p1'], { env });
    const dump = spawnCli(['dump', vol, '--level', '0', '--snapshot', 'p1', '--to', '-', '--compress', 'none', '--catalog', at('pin-catalog.json')], { env: { IMGSTREAM_LOCK_DIR: locks } });
    const exited = new Promise((resolve) => dump.once('exit', resolve));
    // the header goes out after the pins are taken; then nobody reads the pipe, so the dump blocks
    await new Promise<void>((resolve, reject) => {
      dump.stdout!.once('data', () => {
        dump.stdout!.pause();
        resolve();
      });
      dump.once('exit', (code) => reject(new Error(`dump exited ${code} early`)));
    });
    for (const args of [
      ['snapshot', 'delete', vol, 'p1'],
      ['snapshot', 'rename', vol, 'p1', 'p2'],
      ['snapshot', 'shadow', vol, 'p1'],
      ['snapshot', 'delete', vol, 's1'],
    ]) {
      const r = await imgstream(args);
      expect(r.code, args.join(' ')).toBe(7);
      expect(r.stderr).toMatch(new RegExp(`is pinned by imgstream process ${dump.pid}\\b`));
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
    }
    dump.kill('SIGKILL');
    expect(await exited).toBe(null); // killed, no exit code
    dump.stdout!.destroy();
    await cli(['snapshot', 'rename', vol, 'p1', 'p2'], locks);
    await setupOk(['snapshot', 'delete', vol, 'p2'], { env });
  });

  it('reports a missing snapshot as one line with the same exit code as unserved', async () => {
    served.missing = await imgstream(['snapshot', 'delete', vol, 'nope']);
    expect(served.missing.code).toBe(3);
    served.list = (await cli(['snapshot', 'list', vol, '--json'], locks)).stdout;
    served.image = (await cli(['image', vol, 's3 - s1', '--ranges', '--json'], locks)).stdout;
  });

  it('volume import and restore refuse the served volume with "busy"', async () => {
    const imp = await imgstream(['volume', 'import', vol, '--from', at('image.raw')]);
    expect(imp.code).toBe(7);
    expect(imp.stderr).toMatch(/being served by imgstream process \d+ \(write through its NBD export, or stop the server first\)/);
    const res = await imgstream(['restore', '--from', at('l0.stream'), '--to', vol]);
    expect(res.code).toBe(7);
  });

  it('after the server stops: the volume is clean, answers the same, and the dumps restore to identical snapshots', async () => {
    await writer.stop();
    expect(writer.rounds).toBeGreaterThan(4);
    const stopped = await server.stop();
    expect(stopped.stderr).toBe('');
    expect(fs.readdirSync(locks).filter((f) => f.endsWith('.ctl'))).toEqual([]);
    expect((await inProcessOk(['volume', 'check', vol], { env })).stdout).toMatch(/clean/);

    const missing = await imgstream(['snapshot', 'delete', vol, 'nope']);
    expect(missing.code).toBe(served.missing.code);
    expect(missing.stderr).toBe(served.missing.stderr);
    expect((await cli(['snapshot', 'list', vol, '--json'], locks)).stdout).toBe(served.list);
    expect((await cli(['image', vol, 's3 - s1', '--ranges', '--json'], locks)).stdout).toBe(served.image);

    // what was exported while served is what the snapshots hold
    expect((await exported(`${vol}@s2`, 's2.raw')).equals(served.s2)).toBe(true);
    expect((await exported(`${vol}@flushed`, 'flushed-after.raw')).equals(served.flushed)).toBe(true);
    const top = await exported(`${vol}@${served.l1top}`, 'top.raw');
    expect(top.equals(served.top)).toBe(true);

    const copy = at('copy.vol');
    await cli(['restore', '--from', at('l0.stream'), '--from', at('l1.stream'), '--to', copy], locks);
    expect((await exported(`${copy}@${served.l1top}`, 'copy-top.raw')).equals(top)).toBe(true);
    expect((await exported(`${copy}@s1`, 'copy-s1.raw')).equals(await exported(`${vol}@s1`, 's1.raw'))).toBe(true);
    expect((await inProcessOk(['volume', 'check', copy], { env })).stdout).toMatch(/clean/);
  });
});

describe.skipIf(missing.length > 0)('served volume edge cases', () => {
  it('a control socket left by a server killed -9 is ignored: commands open the volume directly', async () => {
    const vol = at('stale.vol');
    await setupOk(['volume', 'create', vol, '--size', '8M'], { env });
    const server = await startServer(vol, ['--socket', at('stale.sock')], locks);
    await setupOk(['snapshot', 'create', vol, 'a'], { env });
    expect((await server.kill9()).signal).toBe('SIGKILL');
    expect(fs.readdirSync(locks).some((f) => f.endsWith('.ctl')), 'the socket file is left behind').toBe(true);
    await cli(['snapshot', 'create', vol, 'b'], locks);
    expect((await inProcessJson(['snapshot', 'list', vol], { env })).snapshots.map((s: any) => s.name)).toEqual(['a', 'b']);
    // a new server replaces the stale socket and answers on it
    const again = await startServer(vol, ['--socket', at('stale.sock')], locks);
    await cli(['snapshot', 'delete', vol, 'a'], locks);
    expect((await inProcessJson(['snapshot', 'list', vol], { env })).snapshots.map((s: any) => s.name)).toEqual(['b']);
    await again.stop();
  });

  it('a dump of a shadow snapshot whose blocks are reused while it reads fails, and records nothing', async () => {
    const vol = at('shadow.vol');
    const small = 2048; // blocks of the logical disk; the volume has room for about 1.3 times that
    fs.writeFileSync(at('shadow.raw'), randomImage(small, BS, 11, 0));
    await setupOk(['volume', 'create', vol, '--size', String(small * BS), '--volume-size', String(Math.floor(small * 1.35) * BS)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('shadow.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 'sh', '--shadow'], { env });
    const server = await startServer(vol, ['--socket', at('shadow.sock'), '--cp-interval', '0.05'], locks);
    try {
      const cat = at('shadow-catalog.json');
      const dump = spawnCli(['dump', vol, '--level', '0', '--snapshot', 'sh', '--to', '-', '--compress', 'none', '--catalog', cat], { env: { IMGSTREAM_LOCK_DIR: locks } });
      const exited = new Promise<number | null>((resolve) => dump.once('exit', resolve));
      await new Promise<void>((resolve) => dump.stdout!.once('data', () => {
        dump.stdout!.pause();
        resolve();
      }));
      // overwrite the whole disk: with the free blocks gone, the allocator takes the shadow snapshot's
      for (let off = 0; off < small * BS; off += 1 << 20) await qemuIo(server.info.uri, [`write -P 0x5a ${off} ${1 << 20}`, 'flush'], ['-t', 'writeback']);
      const sh = (await inProcessJson(['snapshot', 'list', vol], { env })).snapshots[0];
      expect(sh.reusedBlocks, 'blocks of the shadow snapshot were reused').toBeGreaterThan(0);
      let err = '';
      dump.stderr!.on('data', (b: Buffer) => (err += b.toString()));
      dump.stdout!.resume();
      expect(await exited).toBe(4);
      expect(err).toMatch(/shadow snapshot "sh" had blocks reused while it was read/);
      const dumps = fs.existsSync(cat) ? JSON.parse(fs.readFileSync(cat, 'utf8')).dumps : [];
      expect(dumps, 'nothing in the catalog').toEqual([]);
    } finally {
      await server.stop();
    }
  });

  it('a read-only server refuses snapshot changes with "busy" and serves reads', async () => {
    const vol = at('ro.vol');
    fs.writeFileSync(at('ro.raw'), randomImage(2048, BS, 9, 0.2));
    await setupOk(['volume', 'create', vol, '--size', '8M'], { env });
    await setupOk(['volume', 'import', vol, '--from', at('ro.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 'a'], { env });
    const server = await startServer(vol, ['--socket', at('ro.sock'), '--readonly'], locks);
    const r = await imgstream(['snapshot', 'create', vol, 'b']);
    expect(r.code).toBe(7);
    expect(r.stderr).toMatch(/served read-only by imgstream process/);
    expect((await exported(vol, 'ro-active.raw', true)).equals(fs.readFileSync(at('ro.raw')))).toBe(true);
    expect((await exported(`${vol}@a`, 'ro-a.raw')).equals(fs.readFileSync(at('ro.raw')))).toBe(true);
    expect((await inProcessJson(['volume', 'check', vol], { env })).ok).toBe(true);
    const imp = await imgstream(['volume', 'import', vol, '--from', at('ro.raw')]);
    expect(imp.code).toBe(7);
    expect(imp.stderr).toMatch(/serves the volume read-only: stop the server first/);
    await server.stop();
  });
});
