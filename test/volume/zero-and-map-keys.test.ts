// isZero (compared in place, in 1 MiB steps, without views) and the logical map's numeric
// node keys: a property against the obvious definitions, and a map of many leaves at
// every level reading back what was set.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { isZero } from '../../src/volume/zero.js';
import { readLogicalBytes, writeLogicalBytes } from '../../src/volume/logical-io.js';
import { Volume } from '../../src/volume/volume.js';

describe('isZero', () => {
  it('is true exactly when every byte is zero, at any length and position', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 3 << 20 }), fc.double({ min: 0, max: 1, noNaN: true }), fc.boolean(), (len, where, dirty) => {
        const b = Buffer.alloc(len);
        if (dirty && len > 0) b[Math.min(len - 1, Math.floor(where * len))] = 1;
        expect(isZero(b)).toBe(!(dirty && len > 0));
        // a view into a larger buffer: only its own bytes count
        const big = Buffer.alloc(len + 2, 7);
        big.fill(0, 1, len + 1);
        expect(isZero(big.subarray(1, len + 1))).toBe(true);
      }),
      { numRuns: 60 },
    );
  });
});

describe('logical map node keys', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-mapkeys-'));
  process.env.IMGSTREAM_LOCK_DIR = path.join(dir, 'locks');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('keeps leaves of far apart indexes and their parents apart (a 3-level map), across a CP and a reopen', () => {
    const file = path.join(dir, 'v.vol');
    // 512 entries a node at 4 KiB: 2^18 + 1 blocks need 3 levels
    const blocks = 512 * 512 + 1;
    Volume.create(file, { size: blocks * 4096, blockSize: 4096, volumeSize: 64 << 20 });
    const lbns = [0, 1, 511, 512, 513, 512 * 8, 512 * 512 - 1, 512 * 512];
    const data = (lbn: number) => Buffer.alloc(4096, (lbn % 250) + 1);
    let vol = Volume.open(file, { write: true });
    try {
      for (const lbn of lbns) writeLogicalBytes(vol, lbn * 4096, data(lbn));
      vol.commit();
    } finally {
      vol.close();
    }
    vol = Volume.open(file, { write: false });
    try {
      const got = Buffer.alloc(4096);
      for (const lbn of [...lbns, 2, 512 * 7, 512 * 511]) {
        readLogicalBytes(vol, vol.map, lbn * 4096, got);
        expect(got.equals(lbns.includes(lbn) ? data(lbn) : Buffer.alloc(4096)), `block ${lbn}`).toBe(true);
      }
    } finally {
      vol.close();
    }
  });
});
