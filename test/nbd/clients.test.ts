// Real NBD clients against `imgstream serve nbd`: qemu-img writes a whole image into the
// export, nbdcopy reads it back, qemu-io writes, discards and zeroes at odd offsets and
// lengths, two clients run at once, and a snapshot export refuses writes. What the
// volume holds afterwards is checked with `imgstream volume export` and `volume check`.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { randomImage, rng, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { cli, missingBinaries, ok, qemuIo, run, startServer } from './support.js';

const missing = missingBinaries(['qemu-img', 'qemu-io', 'nbdcopy', 'nbdinfo']);
if (missing.length) console.warn(`NBD client tests skipped: ${missing.join(', ')} not installed (apt-get install qemu-utils libnbd-bin)`);

const BS = 4096;
const BLOCKS = 8192; // a 32 MiB disk
const SIZE = BS * BLOCKS;
const root = tempDir('imgstream-nbd-clients-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** The whole export as nbdcopy reads it. */
async function readExport(uri: string, file: string): Promise<Buffer> {
  fs.rmSync(file, { force: true });
  await ok('nbdcopy', [uri, file]);
  return fs.readFileSync(file);
}

async function exportVolume(vol: string, file: string): Promise<Buffer> {
  fs.rmSync(file, { force: true });
  await cli(['volume', 'export', vol, '--to', file], locks);
  return fs.readFileSync(file);
}

async function checkClean(vol: string): Promise<void> {
  const r = await cli(['volume', 'check', vol], locks);
  expect(r.stdout).toMatch(/clean/);
}

describe.skipIf(missing.length > 0)(`real NBD clients${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  const image = randomImage(BLOCKS, BS, 7, 0.3);
  beforeAll(() => {
    // a partial first block and an odd tail, so the image is not all whole blocks of data
    image.fill(0x3c, 100, 3000);
    image.fill(0x4d, SIZE - 5000, SIZE - 17);
    fs.writeFileSync(at('image.raw'), image);
  });

  it('qemu-img convert writes an image into the export; nbdcopy reads it back; volume export equals it', async () => {
    const vol = at('convert.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    const sock = at('convert.sock');
    const server = await startServer(vol, ['--socket', sock], locks);
    expect(server.info.uri).toBe(`nbd+unix:///?socket=${sock}`);
    expect(server.info.size).toBe(SIZE);
    expect(server.info.readOnly).toBe(false);
    await ok('qemu-img', ['convert', '-n', '-O', 'raw', at('image.raw'), server.info.uri]);
    const back = await readExport(server.info.uri, at('convert-back.raw'));
    expect(back.equals(image), 'nbdcopy reads back the image').toBe(true);
    const r = await server.stop();
    expect(r.stdout).toMatch(/"consistencyPoints"/);
    // JSON lines: the listening line, then the summary on one line
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(2);
    expect(Object.keys(JSON.parse(lines[1]))).toContain('consistencyPoints');
    expect(fs.existsSync(sock), 'the socket file is removed').toBe(false);
    expect((await exportVolume(vol, at('convert-export.raw'))).equals(image), 'volume export equals the image').toBe(true);
    await checkClean(vol);
  });

  it('a socket given as a relative path is named by its absolute path in the URI, which clients elsewhere can use', async () => {
    const vol = at('rel.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    const server = await startServer(vol, ['--socket', 'rel.sock'], locks, { cwd: root });
    try {
      expect(server.info.uri).toBe(`nbd+unix:///?socket=${at('rel.sock')}`);
      expect(process.cwd()).not.toBe(root);
      expect((await ok('nbdinfo', ['--size', server.info.uri])).stdout.trim()).toBe(String(SIZE));
    } finally {
      await server.stop();
    }
  });

  it('qemu-io writes, discards and zeroes at odd offsets and lengths over TCP', async () => {
    const vol = at('odd.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    const server = await startServer(vol, ['--listen', '127.0.0.1:0'], locks);
    expect(server.info.uri).toMatch(/^nbd:\/\/127\.0\.0\.1:\d+$/);
    const model = Buffer.from(image);
    const ops: string[] = [];
    const write = (pattern: number, off: number, len: number) => {
      ops.push(`write -P 0x${pattern.toString(16)} ${off} ${len}`);
      model.fill(pattern, off, off + len);
    };
    const zero = (cmd: 'discard' | 'write -z', off: number, len: number) => {
      ops.push(`${cmd} ${off} ${len}`);
      model.fill(0, off, off + len);
    };
    write(0xab, 1000, 5000); // inside two blocks, neither whole
    zero('discard', 4096, 8192); // two whole blocks
    write(0x5a, 4095, 2); // across a block boundary
    zero('write -z', 100001, 7777); // partial, whole, partial
    write(0x11, 65536, 131072); // aligned, many blocks
    zero('discard', 65536 + 1000, 4096 * 5); // odd discard inside what was just written
    write(0x22, 3, 1); // one byte
    write(0x33, SIZE - 1, 1); // the last byte
    zero('write -z', SIZE - 10000, 10000); // the tail
    write(0x44, 2 * 1024 * 1024 - 7, 3 * 1024 * 1024 + 14); // larger than one request of some clients
    await qemuIo(server.info.uri, ops);
    // qemu-io checks the contents itself too: every run of equal bytes in what the ops touched
    const checks: string[] = [];
    for (const op of ops) {
      const [off, len] = op.split(' ').slice(-2).map(Number);
      for (let i = off; i < off + len; ) {
        let j = i + 1;
        while (j < off + len && model[j] === model[i]) j++;
        checks.push(`read -P 0x${model[i].toString(16)} ${i} ${j - i}`);
        i = j;
      }
    }
    expect(checks.length).toBeGreaterThan(ops.length);
    await qemuIo(server.info.uri, checks);
    expect((await readExport(server.info.uri, at('odd-back.raw'))).equals(model), 'the export equals the model').toBe(true);
    await server.stop();
    expect((await exportVolume(vol, at('odd-export.raw'))).equals(model), 'the volume equals the model').toBe(true);
    await checkClean(vol);
  });

  it('two clients at once are both served correctly', async () => {
    const vol = at('two.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    const server = await startServer(vol, ['--socket', at('two.sock'), '--cp-interval', '0.05'], locks);
    const model = Buffer.from(image);
    const random = rng(42);
    // two writers on interleaved regions (odd sizes, so blocks are shared between them) and a reader
    const half = SIZE / 2;
    const scripts: string[][] = [[], []];
    for (let i = 0; i < 150; i++) {
      for (const w of [0, 1]) {
        const slot = Math.floor(random() * 200);
        const off = slot * 65536 + w * 32768 + Math.floor(random() * 1000);
        const len = 1 + Math.floor(random() * 30000);
        if (off + len > half * 2) continue;
        const pattern = w === 0 ? 0xa0 + (i % 16) : 0xb0 + (i % 16);
        scripts[w].push(`write -P 0x${pattern.toString(16)} ${off} ${len}`);
        model.fill(pattern, off, off + len);
      }
    }
    const readers = [run('nbdcopy', [server.info.uri, at('two-read-0.raw')]), run('nbdcopy', [server.info.uri, at('two-read-1.raw')])];
    // writeback cache: no flush after every write, so the writers really overlap
    await Promise.all([qemuIo(server.info.uri, scripts[0], ['-t', 'writeback']), qemuIo(server.info.uri, scripts[1], ['-t', 'writeback'])]);
    for (const r of await Promise.all(readers)) expect(r.code, r.stderr).toBe(0);
    expect((await readExport(server.info.uri, at('two-back.raw'))).equals(model), 'the export holds both clients\' writes').toBe(true);
    // two readers at once read the same bytes
    const [a, b] = await Promise.all([readExport(server.info.uri, at('two-a.raw')), readExport(server.info.uri, at('two-b.raw'))]);
    expect(a.equals(model) && b.equals(model)).toBe(true);
    await server.stop();
    expect((await exportVolume(vol, at('two-export.raw'))).equals(model)).toBe(true);
    await checkClean(vol);
  });

  it('a snapshot export is read-only: clients refuse to write, the data is the snapshot', async () => {
    const vol = at('snap.vol');
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 'monday'], { env });
    const changed = Buffer.from(image);
    changed.fill(0x99, 0, 1 << 20);
    fs.writeFileSync(at('changed.raw'), changed);
    await setupOk(['volume', 'import', vol, '--from', at('changed.raw')], { env });

    const server = await startServer(vol, ['--socket', at('snap.sock'), '--snapshot', 'monday'], locks);
    expect(server.info.readOnly).toBe(true);
    const info = JSON.parse((await ok('nbdinfo', ['--json', server.info.uri])).stdout);
    expect(info.exports[0].is_read_only).toBe(true);
    expect(info.exports[0].can_trim).toBe(false);
    // qemu and libnbd see the read-only flag and refuse before sending anything
    const q = await run('qemu-io', ['-f', 'raw', server.info.uri, '-c', 'write -P 0xee 0 4096']);
    expect(q.code).not.toBe(0);
    expect(q.stdout + q.stderr).toMatch(/Permission denied|read-only|Operation not permitted/);
    const c = await run('nbdcopy', [at('changed.raw'), server.info.uri]);
    expect(c.code).not.toBe(0);
    expect(c.stderr).toMatch(/read-only|Operation not permitted/);
    expect((await readExport(server.info.uri, at('snap-back.raw'))).equals(image), 'the export is the snapshot').toBe(true);
    await server.stop();
    expect((await exportVolume(vol, at('snap-export.raw'))).equals(changed), 'the active file system is untouched').toBe(true);

    // --readonly on the active file system: the same refusal
    const ro = await startServer(vol, ['--socket', at('ro.sock'), '--readonly'], locks);
    expect(ro.info.readOnly).toBe(true);
    const q2 = await run('qemu-io', ['-f', 'raw', ro.info.uri, '-c', 'write -P 0xee 0 4096']);
    expect(q2.code).not.toBe(0);
    expect((await readExport(ro.info.uri, at('ro-back.raw'))).equals(changed)).toBe(true);
    await ro.stop();
    await checkClean(vol);
  });
});
