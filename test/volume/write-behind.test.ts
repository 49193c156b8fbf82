// WriteBehind: writes on libuv's threads, a bound on what is in flight, and written(): a
// barrier for the writes started before it (the mirror receiver syncs and acknowledges
// after it, so what it acknowledges must be in the file by then).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BlockFile } from '../../src/volume/block-file.js';
import { WriteBehind } from '../../src/volume/write-behind.js';
import { tempDir } from '../support/images.js';

const dir = tempDir('imgstream-wb-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function filled(bytes: number, value: number): Buffer {
  return Buffer.alloc(bytes, value);
}

describe('write-behind', () => {
  it('written() resolves once every write started before it is in the file', async () => {
    const file = path.join(dir, 'a.bin');
    fs.writeFileSync(file, Buffer.alloc(0));
    const bf = BlockFile.open(file, true);
    try {
      const wb = new WriteBehind(bf, 4 << 20);
      const piece = 1 << 20;
      for (let round = 0; round < 5; round++) {
        // several writes in flight at once, the bound forcing some to wait
        for (let k = 0; k < 12; k++) await wb.write(filled(piece, round * 16 + k + 1), (round * 12 + k) * piece);
        await wb.written();
        // everything started so far is readable, whatever is still to come
        const got = fs.readFileSync(file);
        expect(got.length).toBe((round + 1) * 12 * piece);
        for (let k = 0; k < 12; k++) expect(got[(round * 12 + k) * piece + piece - 1]).toBe(round * 16 + k + 1);
      }
      await wb.drain();
    } finally {
      bf.close();
    }
  });

  it('written() after nothing, or after everything finished, resolves at once', async () => {
    const file = path.join(dir, 'b.bin');
    fs.writeFileSync(file, Buffer.alloc(0));
    const bf = BlockFile.open(file, true);
    try {
      const wb = new WriteBehind(bf);
      await wb.written();
      await wb.write(filled(4096, 7), 0);
      await wb.drain();
      await wb.written();
      expect(fs.readFileSync(file)[4095]).toBe(7);
    } finally {
      bf.close();
    }
  });

  it('a failed write makes written() and later writes throw', async () => {
    const file = path.join(dir, 'c.bin');
    fs.writeFileSync(file, Buffer.alloc(8192));
    const bf = BlockFile.open(file, false); // read-only: writes fail with EBADF
    try {
      const wb = new WriteBehind(bf);
      await wb.write(filled(4096, 1), 0);
      await expect(wb.written()).rejects.toMatchObject({ code: 'io' });
      await expect(wb.write(filled(4096, 1), 4096)).rejects.toMatchObject({ code: 'io' });
    } finally {
      bf.close();
    }
  });
});
