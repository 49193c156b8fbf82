// kill -9 of a serving `imgstream serve nbd` while a client writes, with consistency
// points on a fast timer (so some land during the writes) or none at all. Each round: a client writes a
// region and waits for its FLUSH to be acknowledged, another client keeps writing
// without flushing, and the server is killed at a pseudo-random moment. Afterwards the
// volume must check clean, every flushed region must be there, and each unflushed write
// must be there whole or not at all (a CP never splits a request).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomImage, rng, tempDir } from '../support/images.js';
import { inProcessOk, setupOk } from '../support/in-process.js';
import { missingBinaries, qemuIo, run, startServer } from './support.js';

const missing = missingBinaries(['qemu-io', 'nbdcopy']);
if (missing.length) console.warn(`NBD kill -9 tests skipped: ${missing.join(', ')} not installed (apt-get install qemu-utils libnbd-bin)`);

const BS = 4096;
const SIZE = 32 << 20;
const FLUSHED_LEN = 1 << 20;
const UNFLUSHED_FROM = 16 << 20;
const CHUNK = 64 << 10;
const ROUNDS = 6;
const root = tempDir('imgstream-nbd-kill9-');
const locks = path.join(root, 'locks');
const env = { IMGSTREAM_LOCK_DIR: locks };
const at = (f: string) => path.join(root, f);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe.skipIf(missing.length > 0)(`kill -9 of the NBD server${missing.length ? ` (skipped: ${missing.join(', ')} not installed)` : ''}`, () => {
  it('keeps every flushed write, loses unflushed writes only whole, and leaves the volume clean', async () => {
    const vol = at('k.vol');
    const image = randomImage(SIZE / BS, BS, 99, 0.2);
    fs.writeFileSync(at('image.raw'), image);
    await setupOk(['volume', 'create', vol, '--size', String(SIZE)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    const model = Buffer.from(image);
    const random = rng(2024);
    let lostSome = 0;
    let keptSome = 0;
    for (let round = 0; round < ROUNDS; round++) {
      // odd rounds take no timed CPs: only the FLUSH itself can make the flushed write durable
      const server = await startServer(vol, ['--socket', at('k.sock'), '--cp-interval', round % 2 ? '0' : '0.05'], locks);
      const uri = server.info.uri;
      // a flushed write: qemu-io's flush returns only once the server acknowledged FLUSH
      const pattern = 0x10 + round;
      const off = round * FLUSHED_LEN + 123;
      await qemuIo(uri, [`write -P 0x${pattern.toString(16)} ${off} ${FLUSHED_LEN}`, 'flush'], ['-t', 'writeback']);
      model.fill(pattern, off, off + FLUSHED_LEN);
      // unflushed writes, until the kill
      const q = 0x80 + round;
      const cmds: string[] = [];
      for (let o = UNFLUSHED_FROM; o < SIZE; o += CHUNK) cmds.push(`write -P 0x${q.toString(16)} ${o} ${CHUNK}`);
      const writer = run('qemu-io', ['-f', 'raw', '-t', 'writeback', uri, ...cmds.flatMap((c) => ['-c', c])]);
      await new Promise((r) => setTimeout(r, 30 + Math.floor(random() * 300)));
      const killed = await server.kill9();
      expect(killed.signal).toBe('SIGKILL');
      await writer;

      // a stale lock and a stale socket file are left behind: neither blocks what follows
      // (the check and the export run here, not as processes: they are not what this tests)
      const check = await inProcessOk(['volume', 'check', vol], { env });
      expect(check.stdout, `round ${round}`).toMatch(/clean/);
      fs.rmSync(at('after.raw'), { force: true });
      await inProcessOk(['volume', 'export', vol, '--to', at('after.raw')], { env });
      const after = fs.readFileSync(at('after.raw'));
      expect(after.subarray(0, UNFLUSHED_FROM).equals(model.subarray(0, UNFLUSHED_FROM)), `round ${round}: flushed writes are all there`).toBe(true);
      for (let o = UNFLUSHED_FROM; o < SIZE; o += CHUNK) {
        const got = after.subarray(o, o + CHUNK);
        const old = got.equals(model.subarray(o, o + CHUNK));
        const written = got.equals(Buffer.alloc(CHUNK, q));
        expect(old || written, `round ${round}: the write at ${o} is whole or absent`).toBe(true);
        if (written && !old) keptSome++;
        if (old && !written) lostSome++;
        got.copy(model, o);
      }
    }
    // the kills landed while writes went on, and timed CPs made unflushed writes durable
    expect(keptSome + lostSome, 'unflushed writes seen').toBeGreaterThan(0);
    expect(keptSome, 'unflushed writes kept by timed CPs').toBeGreaterThan(0);

    // a server on the volume after all that serves exactly the model
    const server = await startServer(vol, ['--socket', at('k.sock')], locks);
    const r = await run('nbdcopy', [server.info.uri, at('final.raw')]);
    await server.stop();
    expect(r.code, r.stderr).toBe(0);
    expect(fs.readFileSync(at('final.raw')).equals(model)).toBe(true);
  });
});
