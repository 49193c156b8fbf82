// Byte-addressed reads and writes of the logical disk (src/volume/logical-io.ts, what the
// NBD server does for every request), against a plain buffer as the model: random writes,
// zeroings and reads at any offset and length, CPs and snapshots in between, then the
// volume reopened must hold the model and check clean. And a full volume refuses a write
// without changing anything.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { VolumeFullError } from '../../src/core/errors.js';
import { checkVolume } from '../../src/volume/check.js';
import { exportImage } from '../../src/volume/export.js';
import { readLogicalBytes, writeLogicalBytes, zeroLogicalBytes } from '../../src/volume/logical-io.js';
import { Volume } from '../../src/volume/volume.js';
import { exportToBuffer, randomImage, rng, tempDir } from '../support/images.js';

const dir = tempDir('imgstream-logical-io-');
process.env.IMGSTREAM_LOCK_DIR = path.join(dir, 'locks');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function clean(vol: Volume): void {
  const rep = checkVolume(vol);
  expect([...rep.problems, ...rep.trees.flatMap((t) => t.problems)]).toEqual([]);
}

describe('logical I/O at byte offsets', () => {
  for (const bs of [4096, 16384]) {
    it(`matches a byte-buffer model under random writes, zeroings and reads (block size ${bs})`, async () => {
      const blocks = 600;
      const size = blocks * bs;
      const file = path.join(dir, `m${bs}.vol`);
      Volume.create(file, { size, blockSize: bs, maxSnapshots: 8 });
      const model = Buffer.alloc(size);
      const snaps: Array<[string, Buffer]> = [];
      const random = rng(bs);
      const pick = (max: number) => Math.floor(random() * max);
      let vol = Volume.open(file, { write: true });
      try {
        for (let step = 0; step < 400; step++) {
          // lengths from one byte to many blocks, offsets anywhere (aligned a third of the time)
          const len = 1 + (random() < 0.5 ? pick(bs * 2) : pick(bs * 40));
          let off = random() < 0.33 ? pick(blocks) * bs : pick(size);
          if (off + len > size) off = size - len;
          const what = random();
          if (what < 0.55) {
            const data = random() < 0.1 ? Buffer.alloc(len) : randomImage(Math.ceil(len / 64), 64, step, 0.2).subarray(0, len);
            writeLogicalBytes(vol, off, data);
            data.copy(model, off);
          } else if (what < 0.75) {
            zeroLogicalBytes(vol, off, len);
            model.fill(0, off, off + len);
          } else {
            const out = Buffer.alloc(len, 0xee);
            readLogicalBytes(vol, vol.map, off, out);
            expect(out.equals(model.subarray(off, off + len)), `read ${off}+${len} at step ${step}`).toBe(true);
          }
          if (step % 50 === 49) vol.commit();
          if (step % 120 === 119) {
            vol.createSnapshot(`s${step}`);
            snaps.push([`s${step}`, Buffer.from(model)]);
          }
          if (step === 250) {
            // reopen: from here on the map and planes are read back from the file
            vol.commit();
            vol.close();
            vol = Volume.open(file, { write: true });
          }
        }
        vol.commit();
      } finally {
        vol.close();
      }
      const ro = Volume.open(file, { write: false });
      try {
        expect((await exportToBuffer((sink) => exportImage(ro, undefined, sink))).equals(model)).toBe(true);
        for (const [name, expected] of snaps) {
          const out = Buffer.alloc(size);
          readLogicalBytes(ro, ro.mapOf(name), 0, out);
          expect(out.equals(expected), `snapshot ${name}`).toBe(true);
        }
        clean(ro);
      } finally {
        ro.close();
      }
    });
  }

  it('zeroing a long range costs what is mapped in it, and unmaps whole blocks', () => {
    const bs = 4096;
    const file = path.join(dir, 'long.vol');
    const size = 1 << 30; // 1 GiB logical, thin
    Volume.create(file, { size, volumeSize: 64 << 20 });
    const vol = Volume.open(file, { write: true });
    try {
      writeLogicalBytes(vol, 5 * bs + 1, Buffer.alloc(3 * bs, 1));
      writeLogicalBytes(vol, size - bs, Buffer.alloc(bs, 2));
      vol.commit();
      expect(vol.rootRecord.mappedBlocks).toBe(5);
      const t0 = performance.now();
      zeroLogicalBytes(vol, 7, size - 7 - 100);
      expect(performance.now() - t0, 'zeroing 1 GiB with 5 blocks mapped').toBeLessThan(2000);
      vol.commit();
      // block 0 keeps bytes 0..6 (zeros anyway: unmapped), the last block keeps its last 100 bytes
      expect(vol.rootRecord.mappedBlocks).toBe(1);
      const tail = Buffer.alloc(bs);
      readLogicalBytes(vol, vol.map, size - bs, tail);
      expect(tail.equals(Buffer.concat([Buffer.alloc(bs - 100), Buffer.alloc(100, 2)]))).toBe(true);
      clean(vol);
    } finally {
      vol.close();
    }
  });

  it('a full volume refuses a write with VolumeFullError and changes nothing', () => {
    const bs = 4096;
    const file = path.join(dir, 'full.vol');
    Volume.create(file, { size: 4096 * bs, volumeSize: 700 * bs });
    const vol = Volume.open(file, { write: true });
    try {
      const a = Buffer.alloc(300 * bs, 0x41);
      writeLogicalBytes(vol, 0, a);
      vol.commit();
      const before = vol.rootRecord;
      expect(() => writeLogicalBytes(vol, 1000 * bs, Buffer.alloc(2000 * bs, 0x42))).toThrow(VolumeFullError);
      expect(vol.rootRecord.usedBlocks).toBe(before.usedBlocks);
      expect(vol.rootRecord.mappedBlocks).toBe(before.mappedBlocks);
      vol.commit();
      const out = Buffer.alloc(3000 * bs);
      readLogicalBytes(vol, vol.map, 0, out);
      expect(out.equals(Buffer.concat([a, Buffer.alloc(2700 * bs)]))).toBe(true);
      // a write that fits still works afterwards
      writeLogicalBytes(vol, 1000 * bs + 5, Buffer.alloc(10 * bs, 0x43));
      vol.commit();
      clean(vol);
    } finally {
      vol.close();
    }
  });
});

describe('no-op rewrites', () => {
  it('a write of the bytes a block holds keeps the block where it is; a changed block moves; zeroes over holes allocate nothing', () => {
    const bs = 4096;
    const file = path.join(dir, 'nop.vol');
    Volume.create(file, { size: 64 * bs, blockSize: bs, maxSnapshots: 4 });
    const vol = Volume.open(file, { write: true });
    try {
      const data = randomImage(32, bs, 3, 0);
      writeLogicalBytes(vol, 0, data);
      vol.commit();
      vol.createSnapshot('s');
      const before = Array.from({ length: 32 }, (_, l) => vol.map.lookup(l));
      // the same bytes, whole blocks and a partial block, at unaligned offsets too
      writeLogicalBytes(vol, 0, data);
      writeLogicalBytes(vol, 5 * bs + 100, data.subarray(5 * bs + 100, 5 * bs + 300));
      writeLogicalBytes(vol, 33, data.subarray(33, 3 * bs + 7));
      zeroLogicalBytes(vol, 40 * bs, 10 * bs + 5);
      expect(vol.hasUncommittedChanges).toBe(false);
      expect(Array.from({ length: 32 }, (_, l) => vol.map.lookup(l))).toEqual(before);
      // one changed block among unchanged ones: only it moves
      const changed = Buffer.from(data.subarray(0, 4 * bs));
      changed[2 * bs + 9] ^= 0xff;
      writeLogicalBytes(vol, 0, changed);
      const after = Array.from({ length: 32 }, (_, l) => vol.map.lookup(l));
      expect(after.filter((v, l) => v !== before[l]).length).toBe(1);
      expect(after[2]).not.toBe(before[2]);
      vol.commit();
      const out = Buffer.alloc(4 * bs);
      readLogicalBytes(vol, vol.map, 0, out);
      expect(out.equals(changed)).toBe(true);
      clean(vol);
    } finally {
      vol.close();
    }
  });
});
