// What a served volume does as clients keep using it: rewriting the whole disk again
// and again (blocks freed by a rewrite are free only after the next CP: the server takes
// one rather than answer ENOSPC), a connection kept open on an imgstream:image context
// while others write (its answers follow the volume), and a server whose terminal goes
// away (SIGHUP takes the last CP, as SIGTERM does).
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { CLI_BIN, cli, missingBinaries, ok, RawClient, startServer } from './support.js';

const root = tempDir('imgstream-nbd-rewrites-');
const locks = path.join(root, 'locks');
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

// nbdsh runs the first python3 on PATH: the system's, which has libnbd's module, goes first
const NBDSH_PATH = `/usr/bin:${process.env.PATH ?? ''}`;
const noNbdsh = missingBinaries(['nbdsh']).length > 0 || spawnSync('nbdsh', ['-c', 'pass'], { env: { ...process.env, PATH: NBDSH_PATH } }).status !== 0;
const noQemuImg = missingBinaries(['qemu-img']).length > 0;

const NBDMAGIC = Buffer.from('NBDMAGIC');
const IHAVEOPT = Buffer.from('IHAVEOPT');

/** A raw client through the old-style EXPORT_NAME negotiation, ready for requests. */
async function connect(info: Parameters<typeof RawClient.connect>[0]): Promise<RawClient> {
  const c = await RawClient.connect(info);
  const hello = await c.read(18);
  expect(hello.subarray(0, 8).equals(NBDMAGIC)).toBe(true);
  c.write(Buffer.from([0, 0, 0, 3])); // fixed newstyle, no zeroes
  const opt = Buffer.alloc(16);
  IHAVEOPT.copy(opt);
  opt.writeUInt32BE(1, 8); // EXPORT_NAME, empty name
  c.write(opt);
  await c.read(10);
  return c;
}

function writeRequest(cookie: number, offset: number, data: Buffer): Buffer {
  const h = Buffer.alloc(28);
  h.writeUInt32BE(0x25609513, 0);
  h.writeUInt16BE(1, 6); // WRITE
  h.writeBigUInt64BE(BigInt(cookie), 8);
  h.writeBigUInt64BE(BigInt(offset), 16);
  h.writeUInt32BE(data.length, 24);
  return Buffer.concat([h, data]);
}

async function errorOf(c: RawClient, cookie: number): Promise<number> {
  const r = await c.read(16);
  expect(Number(r.readBigUInt64BE(8))).toBe(cookie);
  return r.readUInt32BE(4);
}

describe('a served volume as clients keep using it', () => {
  it.skipIf(noQemuImg)('rewriting the whole disk again and again with CPs only on flush: blocks a rewrite freed are taken once the CP the server takes for them makes them free (no ENOSPC while there is room)', async () => {
    const BS = 4096;
    const BLOCKS = 8192; // 32 MiB
    const vol = at('rewrite.vol');
    // room for the disk 1.6 times over: a rewrite fits only if the blocks it frees are reused before it ends
    await setupOk(['volume', 'create', vol, '--size', `${BLOCKS * BS}`, '--volume-size', `${Math.floor(1.6 * BLOCKS * BS) + (2 << 20)}`]);
    const server = await startServer(vol, ['--socket', at('rewrite.sock'), '--cp-interval', '0'], locks);
    let last: Buffer = Buffer.alloc(0);
    for (let round = 0; round < 3; round++) {
      last = randomImage(BLOCKS, BS, 700 + round, 0);
      fs.writeFileSync(at('image.raw'), last);
      // qemu-img sends the whole image, then one flush
      await ok('qemu-img', ['convert', '-n', '-f', 'raw', '-O', 'raw', at('image.raw'), server.info.uri]);
    }
    await server.stop();
    expect(server.stderr()).not.toMatch(/refused|full/);
    await cli(['volume', 'export', vol, '--to', at('out.raw')], locks);
    expect(fs.readFileSync(at('out.raw')).equals(last)).toBe(true);
    await cli(['volume', 'check', vol], locks);
  });

  it('a volume too full to take a write still answers ENOSPC after the CP it tries, and keeps serving', async () => {
    const BS = 4096;
    const BLOCKS = 256;
    const vol = at('tight.vol');
    await setupOk(['volume', 'create', vol, '--size', `${BLOCKS * BS}`]);
    const server = await startServer(vol, ['--socket', at('tight.sock'), '--cp-interval', '0'], locks);
    const c = await connect(server.info);
    let cookie = 1;
    const rewrite = async (seed: number): Promise<number> => {
      let refused = 0;
      for (let i = 0; i < BLOCKS; i++) {
        c.write(writeRequest(cookie, i * BS, randomImage(1, BS, seed + i, 0)));
        const e = await errorOf(c, cookie++);
        expect([0, 28]).toContain(e);
        if (e === 28) refused++;
      }
      return refused;
    };
    expect(await rewrite(1000)).toBe(0);
    await cli(['snapshot', 'create', vol, 'k1'], locks);
    expect(await rewrite(2000)).toBe(0); // the disk once more: the default size holds it
    await cli(['snapshot', 'create', vol, 'k2'], locks);
    expect(await rewrite(3000)).toBeGreaterThan(0); // a third copy does not fit
    c.close();
    await server.stop();
    expect(server.stderr()).toMatch(/WRITE refused: .*volume is full/);
    await cli(['volume', 'check', vol], locks);
  });

  it.skipIf(noNbdsh)('a nearly full volume whose free blocks come from a shadow snapshot keeps room for its CPs: every acknowledged write is in the volume after the stop', async () => {
    const BS = 4096;
    const vol = at('shadowfull.vol');
    await setupOk(['volume', 'create', vol, '--size', '4M', '--volume-size', '2M']);
    const server = await startServer(vol, ['--socket', at('shadowfull.sock'), '--cp-interval', '3600'], locks);
    const script = `
import nbd, threading, random, hashlib, json, subprocess
uri = ${JSON.stringify(server.info.uri)}
imgstream = ${JSON.stringify([process.execPath, CLI_BIN])}
BS = 4096
def h(b): return hashlib.sha1(b).hexdigest()
model = {}
def fill(seed):
    w = nbd.NBD(); w.connect_uri(uri); r = random.Random(seed)
    for lbn in range(100):
        d = r.randbytes(BS); w.pwrite(d, lbn * BS); model[lbn] = h(d)
    w.flush(); w.shutdown()
fill(1)
subprocess.run(imgstream + ["snapshot", "create", ${JSON.stringify(vol)}, "sh", "--shadow"], check=True, capture_output=True)
fill(2)
subprocess.run(imgstream + ["snapshot", "create", ${JSON.stringify(vol)}, "reg"], check=True, capture_output=True)
subprocess.run(imgstream + ["volume", "info", ${JSON.stringify(vol)}], check=True, capture_output=True)
lock = threading.Lock()
counts = {"ok": 0, "enospc": 0}
def worker(c):
    hd = nbd.NBD(); hd.connect_uri(uri); r = random.Random(100 + c); base = c * 25
    for i in range(300 * 3):
        lbn = base + r.randrange(25); n = min(r.randint(1, 3), base + 25 - lbn)
        trim = r.random() < 0.1
        d = bytes(n * BS) if trim else r.randbytes(n * BS)
        try:
            if trim: hd.trim(n * BS, lbn * BS)
            else: hd.pwrite(d, lbn * BS, nbd.CMD_FLAG_FUA if r.random() < 0.05 else 0)
            with lock:
                counts["ok"] += 1
                for k in range(n): model[lbn + k] = h(d[k * BS:(k + 1) * BS])
            if r.random() < 0.01: hd.flush()
        except nbd.Error as e:
            if e.errnum != 28: raise
            with lock:
                counts["enospc"] += 1
                for k in range(n): model.pop(lbn + k, None)
    hd.shutdown()
ts = [threading.Thread(target=worker, args=(c,)) for c in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps({"counts": counts, "model": model}))
`;
    const out = JSON.parse((await ok('nbdsh', ['-c', script], { env: { PATH: NBDSH_PATH, IMGSTREAM_LOCK_DIR: locks } })).stdout) as { counts: { ok: number }; model: Record<string, string> };
    expect(out.counts.ok).toBeGreaterThan(1000);
    await server.stop(); // exit 0: its last CP committed
    await cli(['volume', 'check', vol], locks);
    await cli(['volume', 'export', vol, '--to', at('shadowfull.raw')], locks);
    const raw = fs.readFileSync(at('shadowfull.raw'));
    // a block whose last request was refused is left out (it may hold the old or the new data)
    for (const [lbn, sha] of Object.entries(out.model)) {
      expect(createHash('sha1').update(raw.subarray(Number(lbn) * BS, (Number(lbn) + 1) * BS)).digest('hex'), `block ${lbn}`).toBe(sha);
    }
  });

  it.skipIf(noNbdsh)('a connection kept open on imgstream:image:active - S sees blocks written after it selected the context, and fails once S is deleted', async () => {
    const BS = 4096;
    const vol = at('ctx.vol');
    await setupOk(['volume', 'create', vol, '--size', `${1024 * BS}`]);
    const server = await startServer(vol, ['--socket', at('ctx.sock')], locks);
    const uri = server.info.uri;
    const script = `
import nbd, subprocess
uri = ${JSON.stringify(uri)}
imgstream = ${JSON.stringify([process.execPath, CLI_BIN])}
ctx = "imgstream:image:active - S"
def status(h):
    out = []
    h.block_status(${1024 * BS}, 0, lambda m, o, e, err: out.extend(e) or 0)
    return [(out[i], out[i + 1]) for i in range(0, len(out), 2)]
w = nbd.NBD(); w.connect_uri(uri)
w.pwrite(b"\\x01" * 8192, 0); w.flush()
subprocess.run(imgstream + ["snapshot", "create", ${JSON.stringify(vol)}, "S"], check=True, capture_output=True)
h = nbd.NBD(); h.add_meta_context(ctx); h.connect_uri(uri)
print("before", status(h))
w.pwrite(b"\\x03" * 4096, 0); w.pwrite(b"\\x02" * 4096, 1 << 20); w.flush()
print("after", status(h))
h2 = nbd.NBD(); h2.add_meta_context(ctx); h2.connect_uri(uri)
print("fresh", status(h2))
subprocess.run(imgstream + ["snapshot", "delete", ${JSON.stringify(vol)}, "S"], check=True, capture_output=True)
try:
    status(h)
    print("deleted: answered")
except nbd.Error as e:
    print("deleted: failed")
w.pwrite(b"\\x04" * 4096, 0); w.flush()
print("reads", w.pread(4096, 0)[:1].hex())
`;
    const out = (await ok('nbdsh', ['-c', script], { env: { PATH: NBDSH_PATH, IMGSTREAM_LOCK_DIR: locks } })).stdout;
    const M = 1 << 20;
    const rest = 1024 * BS;
    // before: blocks 0-1 mapped in S (0), the rest unmapped (2)
    expect(out).toContain(`before [(8192, 0), (${rest - 8192}, 2)]`);
    // after: block 0 rewritten (1), block 1 as S has it (0), a new block at 1 MiB (1)
    const after = `[(4096, 1), (4096, 0), (${M - 8192}, 2), (4096, 1), (${rest - M - 4096}, 2)]`;
    expect(out).toContain(`after ${after}`);
    expect(out).toContain(`fresh ${after}`);
    expect(out).toContain('deleted: failed');
    expect(out).toContain('reads 04'); // the server goes on serving
    await server.stop();
    expect(server.stderr()).toMatch(/imgstream:image:active - S no longer evaluates/);
  });

  it.skipIf(noNbdsh)('a connection kept open on imgstream:image:active - S holds S by identity: S deleted and taken again fails (EIO) and goes on failing, S renamed away and back answers again', async () => {
    const BS = 4096;
    const vol = at('ident.vol');
    await setupOk(['volume', 'create', vol, '--size', `${64 * BS}`]);
    await setupOk(['snapshot', 'create', vol, 'S']);
    const server = await startServer(vol, ['--socket', at('ident.sock')], locks);
    const script = `
import nbd, subprocess
uri = ${JSON.stringify(server.info.uri)}
imgstream = ${JSON.stringify([process.execPath, CLI_BIN])}
def run(*args): subprocess.run(imgstream + list(args), check=True, capture_output=True)
def status(h, what):
    out = []
    try:
        h.block_status(${2 * BS}, 0, lambda m, o, e, err: out.extend(e) or 0)
        print(what, [(out[i], out[i + 1]) for i in range(0, len(out), 2)])
    except nbd.Error as e:
        print(what, "failed", "(EIO)" in str(e))
renamed = nbd.NBD(); renamed.add_meta_context("imgstream:image:active - S"); renamed.connect_uri(uri)
w = nbd.NBD(); w.connect_uri(uri)
w.pwrite(b"\\x01" * ${BS}, 0); w.flush()
status(renamed, "before")
run("snapshot", "rename", ${JSON.stringify(vol)}, "S", "T")
status(renamed, "renamed away")
run("snapshot", "rename", ${JSON.stringify(vol)}, "T", "S")
status(renamed, "renamed back")
run("snapshot", "delete", ${JSON.stringify(vol)}, "S")
run("snapshot", "create", ${JSON.stringify(vol)}, "S")
status(renamed, "taken again")
w.pwrite(b"\\x02" * ${BS}, ${BS}); w.flush()
status(renamed, "written since")
fresh = nbd.NBD(); fresh.add_meta_context("imgstream:image:active - S"); fresh.connect_uri(uri)
status(fresh, "fresh")
`;
    const out = (await ok('nbdsh', ['-c', script], { env: { PATH: NBDSH_PATH, IMGSTREAM_LOCK_DIR: locks } })).stdout;
    // block 0 written after S (1), block 1 unmapped (2)
    expect(out).toContain(`before [(${BS}, 1), (${BS}, 2)]`);
    expect(out).toContain('renamed away failed True');
    expect(out).toContain(`renamed back [(${BS}, 1), (${BS}, 2)]`);
    // the new S holds block 0: answering against it would read 0, "unchanged since S"
    expect(out).toContain('taken again failed True');
    expect(out).toContain('written since failed True');
    expect(out).toContain(`fresh [(${BS}, 0), (${BS}, 1)]`);
    await server.stop();
    expect(server.stderr()).toMatch(/imgstream:image:active - S no longer evaluates: "S" now names another snapshot than the one the context was selected with \(id 2, taken [^;]+; the context's, id 1, was deleted or renamed since\)/);
  });

  it('SIGHUP takes the last CP as SIGTERM does: a write acknowledged but never flushed is in the volume, exit 129', async () => {
    const BS = 4096;
    const vol = at('hup.vol');
    await setupOk(['volume', 'create', vol, '--size', `${256 * BS}`]);
    const server = await startServer(vol, ['--socket', at('hup.sock'), '--cp-interval', '0'], locks);
    const c = await connect(server.info);
    const data = randomImage(2, BS, 5, 0);
    c.write(writeRequest(7, 3 * BS, data));
    expect(await errorOf(c, 7)).toBe(0);
    server.child.kill('SIGHUP');
    const r = await new Promise<number | null>((resolve) => server.child.once('exit', (code) => resolve(code)));
    c.close();
    expect(r).toBe(129);
    expect(server.stderr()).toMatch(/stopped by SIGHUP .*after its last CP/);
    await cli(['volume', 'export', vol, '--to', at('hup.raw')], locks);
    expect(fs.readFileSync(at('hup.raw')).subarray(3 * BS, 5 * BS).equals(data)).toBe(true);
  });
});
