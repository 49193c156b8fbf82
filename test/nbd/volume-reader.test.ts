// Where the server reads a READ's data: at once (page-cache reads, cheap) or on the
// thread pool (large reads, and reads after one that went to the disk, so the event loop
// never waits on the device). Both give the same bytes, and an overlay is always seen.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ASYNC_READS_AFTER_SLOW, ReadPolicy, SYNC_READ_MAX_BYTES, VolumeReader } from '../../src/nbd/volume-reader.js';
import { BlockFile } from '../../src/volume/block-file.js';
import { randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { missingBinaries, ok, startServer } from './support.js';

const root = tempDir('imgstream-nbd-reader-');
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('ReadPolicy', () => {
  it('reads at once while reads are fast, on the pool after a slow one, and tries at once again later', () => {
    const p = new ReadPolicy();
    for (let i = 0; i < 100; i++) {
      expect(p.atOnce(256 << 10)).toBe(true);
      p.tookAtOnce(256 << 10, 0.05); // page cache: 5 GB/s
    }
    p.tookAtOnce(256 << 10, 8); // the device: 8 ms
    for (let i = 0; i < ASYNC_READS_AFTER_SLOW; i++) expect(p.atOnce(256 << 10), `read ${i} after the slow one`).toBe(false);
    expect(p.atOnce(256 << 10)).toBe(true);
    p.tookAtOnce(256 << 10, 0.05);
    expect(p.atOnce(256 << 10)).toBe(true);
  });

  it('a large read at page-cache speed is not slow; reads above the limit always go to the pool', () => {
    const p = new ReadPolicy();
    p.tookAtOnce(SYNC_READ_MAX_BYTES, 0.3); // 1 MiB in 0.3 ms
    expect(p.atOnce(4096)).toBe(true);
    expect(p.atOnce(SYNC_READ_MAX_BYTES)).toBe(true);
    expect(p.atOnce(SYNC_READ_MAX_BYTES + 1)).toBe(false);
    expect(p.atOnce(32 << 20)).toBe(false);
  });
});

describe('VolumeReader', () => {
  const file = path.join(root, 'f.bin');
  const data = randomImage(1024, 4096, 7, 0.2); // 4 MiB
  fs.writeFileSync(file, data);

  it('reads the same bytes at once and on the pool, zeros past the end of the file', async () => {
    const bf = BlockFile.open(file, false);
    try {
      const reader = new VolumeReader(bf);
      const small = Buffer.alloc(64 << 10);
      expect(reader.readNow([{ into: small, position: 12345 }], small.length)).toBe(true);
      expect(small.equals(data.subarray(12345, 12345 + small.length))).toBe(true);

      const big = Buffer.alloc(SYNC_READ_MAX_BYTES * 2, 0xff); // last 1 MiB + 1 MiB past the end
      const runs = [{ into: big, position: data.length - SYNC_READ_MAX_BYTES }];
      expect(reader.readNow(runs, big.length)).toBe(false);
      await new Promise<void>((resolve, reject) => reader.readLater(runs, (err) => (err ? reject(err) : resolve())));
      expect(big.subarray(0, SYNC_READ_MAX_BYTES).equals(data.subarray(data.length - SYNC_READ_MAX_BYTES))).toBe(true);
      expect(big.subarray(SYNC_READ_MAX_BYTES).every((b) => b === 0)).toBe(true);
    } finally {
      fs.closeSync(bf.fd);
    }
  });

  it('a file with an overlay is read at once whatever the size, so the overlay is applied', () => {
    const bf = BlockFile.open(file, false);
    try {
      bf.setOverlay(4096, new Map([[300, Buffer.alloc(4096, 0xab)]]));
      const reader = new VolumeReader(bf);
      const big = Buffer.alloc(4 << 20);
      expect(reader.readNow([{ into: big, position: 0 }], big.length)).toBe(true);
      expect(big.subarray(300 * 4096, 301 * 4096).every((b) => b === 0xab)).toBe(true);
      expect(big.subarray(0, 300 * 4096).equals(data.subarray(0, 300 * 4096))).toBe(true);
    } finally {
      fs.closeSync(bf.fd);
    }
  });
});

const missing = missingBinaries(['nbdcopy']);
describe.skipIf(missing.length > 0)('served reads at once and on the pool', () => {
  it('nbdcopy with 64 KiB and 8 MiB requests reads back exactly the volume', async () => {
    const locks = path.join(root, 'locks');
    const env = { IMGSTREAM_LOCK_DIR: locks };
    const vol = path.join(root, 'r.vol');
    const image = randomImage(2048, 4096, 11, 0.3); // 8 MiB
    fs.writeFileSync(path.join(root, 'image.raw'), image);
    await setupOk(['volume', 'create', vol, '--size', String(image.length)], { env });
    await setupOk(['volume', 'import', vol, '--from', path.join(root, 'image.raw')], { env });
    const server = await startServer(vol, ['--socket', path.join(root, 'r.sock')], locks);
    try {
      for (const size of [String(64 << 10), String(8 << 20)]) {
        const out = path.join(root, `out-${size}.raw`);
        await ok('nbdcopy', [`--request-size=${size}`, server.info.uri, out]);
        expect(fs.readFileSync(out).equals(image), `--request-size ${size}`).toBe(true);
      }
    } finally {
      await server.stop();
    }
  });
});
