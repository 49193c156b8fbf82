// WriteBehind: writes on libuv's threads, a bound on what is in flight, and written(): a
// barrier for the writes started before it (the mirror receiver syncs and acknowledges
// after it, so what it acknowledges must be in the file by then).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { BlockFile } from '../../src/volume/block-file.js';
import { WriteBehind } from '../../src/volume/write-behind.js';
import { alignedBuffers } from '../../src/fs/direct-io.js';
import { tempDir } from '../support/images.js';
import { EarlyWriteback } from '../../src/fs/writeback.js';
import { delayEachWrite } from '../support/delayed-writes.js';

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
      const wb = new WriteBehind(bf, { maxBytes: 4 << 20 });
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

describe('write-behind with direct I/O', () => {
  it('writes whole blocks past the page cache, everything else through it, and every byte lands', async () => {
    const file = path.join(dir, 'direct.bin');
    fs.writeFileSync(file, Buffer.alloc(64 << 20, 0xaa));
    const bf = BlockFile.open(file, true);
    try {
      const before = Buffer.alloc(1 << 20);
      bf.read(before, 8 << 20); // this range is now in the page cache: a direct write must not leave it stale
      const wb = new WriteBehind(bf, { direct: true, writeback: true });
      if (os.platform() === 'linux' && fs.statfsSync(dir).type === 0xef53) expect(wb.direct).toBe(true);
      const expected = fs.readFileSync(file);
      const writes: Array<[Buffer, number, boolean]> = [
        [filled(3 << 20, 1), 0, true], // several slots
        [filled(4096, 2), 8 << 20, true],
        [filled(1 << 20, 3), (8 << 20) + 4096, true],
        [filled(100, 4), (20 << 20) + 7, false], // not whole blocks: through the page cache
        [filled(8192, 5), (30 << 20) + 512, false], // not on a 4 KiB boundary
      ];
      for (let k = 0; k < 40; k++) writes.push([filled(1 << 20, 10 + k), (32 << 20) + ((k * 7) % 32) * (1 << 20), true]);
      for (const [buf, at, aligned] of writes) {
        buf.copy(expected, at);
        await wb.write(buf, at);
        if (aligned && wb.direct) buf.fill(0xee); // copied into an aligned slot: the caller's buffer is free at once
      }
      await wb.written();
      await wb.drain();
      await wb.close();
      expect(wb.direct).toBe(false); // closed
      expect(fs.readFileSync(file).equals(expected)).toBe(true);
      const after = Buffer.alloc(1 << 20);
      bf.read(after, 8 << 20);
      expect(after.equals(expected.subarray(8 << 20, 9 << 20))).toBe(true);
    } finally {
      bf.close();
    }
  });

  it('writes blocks that lie in page-aligned memory as they are, without a slot copy, and keeps them until written()', async () => {
    const file = path.join(dir, 'aligned.bin');
    fs.writeFileSync(file, Buffer.alloc(16 << 20));
    const bf = BlockFile.open(file, true);
    const writes = vi.spyOn(fs, 'write');
    try {
      const [mem] = alignedBuffers(1, 8 << 20);
      for (let k = 0; k < 8; k++) mem.fill(k + 1, k << 20, (k + 1) << 20);
      const wb = new WriteBehind(bf, { direct: true });
      if (!wb.direct) return; // no direct I/O on this file system: nothing to tell apart
      for (let k = 0; k < 8; k++) await wb.write(mem.subarray(k << 20, (k + 1) << 20), (8 - k) << 20);
      await wb.written();
      // every write was made from the caller's memory (no copy), on the direct descriptor
      const made = writes.mock.calls.filter(([fd]) => fd !== bf.fd);
      expect(made.length).toBe(8);
      for (const [, buf] of made) expect((buf as unknown as Uint8Array).buffer).toBe(mem.buffer);
      await wb.close();
      const back = fs.readFileSync(file);
      for (let k = 0; k < 8; k++) expect(back.subarray((8 - k) << 20, (9 - k) << 20).every((b) => b === k + 1), `MiB ${k}`).toBe(true);
    } finally {
      writes.mockRestore();
      bf.close();
    }
  });

  it('goes on through the page cache when a direct write is refused (unaligned memory: EINVAL)', async () => {
    const file = path.join(dir, 'refused.bin');
    fs.writeFileSync(file, Buffer.alloc(16 << 20));
    const bf = BlockFile.open(file, true);
    try {
      const slots = [0, 1, 2].map(() => Buffer.alloc((1 << 20) + 1).subarray(1));
      const wb = new WriteBehind(bf, { direct: true, slots });
      for (let k = 0; k < 12; k++) await wb.write(filled(1 << 20, k + 1), k << 20);
      await wb.drain();
      if (fs.constants.O_DIRECT) expect(wb.direct).toBe(false); // refused, then given up
      await wb.close();
      const back = fs.readFileSync(file);
      for (let k = 0; k < 12; k++) expect(back.subarray(k << 20, (k + 1) << 20).every((b) => b === k + 1), `MiB ${k}`).toBe(true);
    } finally {
      bf.close();
    }
  });

  it('keeps a refused direct descriptor open for the writes still queued on it (they fall back too, never EBADF)', async () => {
    const file = path.join(dir, 'refused-queued.bin');
    fs.writeFileSync(file, Buffer.alloc(8 << 20));
    const bf = BlockFile.open(file, true);
    const writes = delayEachWrite(25); // the first refusal is handled before the queued writes run
    try {
      const slots = [0, 1, 2, 3].map(() => Buffer.alloc((1 << 20) + 1).subarray(1));
      const wb = new WriteBehind(bf, { direct: true, slots });
      for (let k = 0; k < 4; k++) await wb.write(filled(1 << 20, k + 1), k << 20);
      await wb.drain();
      await wb.close();
      writes.mockRestore();
      const back = fs.readFileSync(file);
      for (let k = 0; k < 4; k++) expect(back.subarray(k << 20, (k + 1) << 20).every((b) => b === k + 1), `MiB ${k}`).toBe(true);
    } finally {
      writes.mockRestore();
      bf.close();
    }
  });

  it('falls back to the page cache where the file cannot be opened for direct I/O', async () => {
    const file = path.join(dir, 'gone.bin');
    fs.writeFileSync(file, Buffer.alloc(8192));
    const bf = BlockFile.open(file, true);
    fs.rmSync(file); // the path no longer opens: no direct descriptor
    try {
      const wb = new WriteBehind(bf, { direct: true });
      expect(wb.direct).toBe(false);
      await wb.write(filled(4096, 9), 4096);
      await wb.drain();
      await wb.close();
      const back = Buffer.alloc(4096);
      bf.read(back, 4096);
      expect(back.every((b) => b === 9)).toBe(true);
    } finally {
      bf.close();
    }
  });
});

describe('early writeback', () => {
  afterEach(() => vi.restoreAllMocks());

  /** fdatasync made to answer with `code` (or succeed) after a tick; the calls counted, and how many overlapped. */
  function fakeSync(code?: string) {
    const seen = { calls: 0, running: 0, most: 0 };
    vi.spyOn(fs, 'fdatasync').mockImplementation(((_fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
      seen.calls++;
      seen.most = Math.max(seen.most, ++seen.running);
      setTimeout(() => {
        seen.running--;
        cb(code ? Object.assign(new Error(code), { code }) : null);
      }, 5);
    }) as typeof fs.fdatasync);
    return seen;
  }

  it('syncs every so many bytes written, one sync at a time, and done() waits for the last', async () => {
    const seen = fakeSync();
    const wb = new EarlyWriteback(99, 1 << 20);
    wb.wrote(600 << 10);
    expect(seen.calls).toBe(0); // not enough yet
    wb.wrote(600 << 10);
    expect(seen.calls).toBe(1);
    wb.wrote(4 << 20); // while that one runs: none more
    expect(seen.calls).toBe(1);
    await wb.done();
    expect(seen.running).toBe(0);
    wb.wrote(1 << 20);
    await wb.done();
    expect(seen.calls).toBe(2);
    expect(seen.most).toBe(1);
  });

  it('reports a failed sync, and ignores a file that cannot be synced', async () => {
    fakeSync('EIO');
    const failing = new EarlyWriteback(99, 1);
    failing.wrote(1);
    await expect(failing.done()).rejects.toMatchObject({ code: 'EIO' });
    vi.restoreAllMocks();
    fakeSync('EINVAL');
    const device = new EarlyWriteback(99, 1);
    device.wrote(1);
    await expect(device.done()).resolves.toBeUndefined();
  });

  it('a write-behind that syncs early leaves every byte in the file', async () => {
    const file = path.join(dir, 'early.bin');
    fs.writeFileSync(file, Buffer.alloc(0));
    const bf = BlockFile.open(file, true);
    try {
      const syncs = vi.spyOn(fs, 'fdatasync'); // the real one, counted
      const wb = new WriteBehind(bf, { writeback: true });
      const piece = 4 << 20;
      for (let k = 0; k < 40; k++) await wb.write(filled(piece, k + 1), k * piece); // 160 MiB: past one early sync
      await wb.drain();
      expect(syncs).toHaveBeenCalled();
      const back = Buffer.alloc(piece);
      for (let k = 0; k < 40; k++) {
        bf.read(back, k * piece);
        expect(back.every((b) => b === k + 1), `piece ${k}`).toBe(true);
      }
    } finally {
      bf.close();
    }
  });
});
