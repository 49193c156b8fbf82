// DirectAppender: whatever the sizes appended, the file ends up holding exactly the bytes
// appended, in order, both with direct I/O (ext4 under the system temp folder) and where
// the file system refuses it (tmpfs), and write errors surface.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { DirectAppender, STAGE_BYTES } from '../../src/fs/direct-appender.js';
import { delayEachWrite } from '../support/delayed-writes.js';
import { alignedBuffers } from '../../src/fs/direct-io.js';

const dirs: string[] = [];
function tempDir(parent = os.tmpdir()): string {
  const d = fs.mkdtempSync(path.join(parent, 'imgstream-direct-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
});

/** Appends pieces of the given sizes (patterned bytes) and returns what should be on disk. */
async function appendAll(file: string, sizes: number[], stages?: Buffer[], tryFirst = false): Promise<{ expected: Buffer; direct: boolean }> {
  const fd = fs.openSync(file, 'wx');
  const appender = new DirectAppender(fd, file, stages);
  const parts: Buffer[] = [];
  let seed = 1;
  try {
    for (const n of sizes) {
      const piece = Buffer.alloc(n);
      for (let i = 0; i < n; i++) piece[i] = (seed = (seed * 1103515245 + 12345) >>> 0) >>> 24;
      parts.push(Buffer.from(piece));
      if (!tryFirst || !appender.tryAppend(piece)) await appender.append(piece);
      piece.fill(0xee); // appended bytes are copied: reusing the buffer changes nothing
    }
    await appender.finish();
    expect(appender.length).toBe(sizes.reduce((a, b) => a + b, 0));
    return { expected: Buffer.concat(parts), direct: appender.direct };
  } finally {
    await appender.close();
    fs.closeSync(fd);
  }
}

const shm = fs.existsSync('/dev/shm') ? '/dev/shm' : undefined;

describe('DirectAppender', () => {
  it('writes exactly the bytes appended, across stage boundaries and with a tail of any length', async () => {
    const dir = tempDir();
    const sizes = [16, STAGE_BYTES - 16, 16, 1 << 20, STAGE_BYTES * 2 + 7, 3, 4096, 16, STAGE_BYTES - 4096 - 1];
    const file = path.join(dir, 'stream');
    const { expected, direct } = await appendAll(file, sizes);
    expect(fs.readFileSync(file).equals(expected)).toBe(true);
    // the temp folder here is on a disk file system: the direct path is the one under test
    if (os.platform() === 'linux' && fs.statfsSync(dir).type === 0xef53) expect(direct).toBe(true);
  });

  it('agrees with a plain concatenation for random append sizes (property)', async () => {
    const dir = tempDir();
    let k = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(fc.integer({ min: 0, max: 64 }), fc.integer({ min: 1, max: 3 << 20 })), { maxLength: 12 }), async (sizes) => {
        const file = path.join(dir, `s${k++}`);
        const { expected } = await appendAll(file, sizes);
        expect(fs.readFileSync(file).equals(expected)).toBe(true);
        fs.rmSync(file);
      }),
      { numRuns: 15 },
    );
  });

  it('takes what tryAppend() can take at once and append() the rest, in order, with stages of another size (property)', async () => {
    const dir = tempDir();
    let k = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.oneof(fc.integer({ min: 0, max: 5000 }), fc.integer({ min: 1, max: 300_000 })), { maxLength: 40 }), async (sizes) => {
        const file = path.join(dir, `t${k++}`);
        const { expected } = await appendAll(file, sizes, alignedBuffers(3, 1 << 16), true);
        expect(fs.readFileSync(file).equals(expected)).toBe(true);
        fs.rmSync(file);
      }),
      { numRuns: 25 },
    );
  });

  it('falls back to the page cache when direct writes are refused (unaligned memory: EINVAL), with the same result', async () => {
    const file = path.join(tempDir(), 'stream');
    const unaligned = [0, 1, 2, 3].map(() => Buffer.alloc(STAGE_BYTES + 1).subarray(1));
    const { expected, direct } = await appendAll(file, [100, STAGE_BYTES, 5000, STAGE_BYTES * 3, 1], unaligned);
    if (fs.constants.O_DIRECT) expect(direct).toBe(false); // it was refused, then given up
    expect(fs.readFileSync(file).equals(expected)).toBe(true);
  });

  it('keeps a refused direct descriptor open for the stages still queued on it (they fall back too, never EBADF)', async () => {
    const file = path.join(tempDir(), 'stream');
    const writes = delayEachWrite(25); // the first refusal is handled before the queued writes run
    try {
      const unaligned = [0, 1, 2, 3].map(() => Buffer.alloc(STAGE_BYTES + 1).subarray(1));
      const { expected } = await appendAll(file, [STAGE_BYTES * 3, 10], unaligned);
      writes.mockRestore();
      expect(fs.readFileSync(file).equals(expected)).toBe(true);
    } finally {
      writes.mockRestore();
    }
  });

  it.skipIf(!shm)('writes the same bytes on tmpfs (direct I/O there only since Linux 6.6)', async () => {
    const file = path.join(tempDir(shm), 'stream');
    const { expected } = await appendAll(file, [100, STAGE_BYTES, 5000, 1]);
    expect(fs.readFileSync(file).equals(expected)).toBe(true);
  });

  it('reports a failed write (a read-only descriptor) from append or finish, never silently', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'stream');
    fs.writeFileSync(file, '');
    const fd = fs.openSync(file, 'r');
    const appender = new DirectAppender(fd, path.join(dir, 'missing')); // no direct descriptor either
    const run = async () => {
      await appender.append(Buffer.alloc(STAGE_BYTES + 10));
      await appender.finish();
    };
    await expect(run()).rejects.toMatchObject({ code: 'EBADF' });
    await appender.close();
    fs.closeSync(fd);
  });
});
