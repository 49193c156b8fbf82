import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Worker } from 'node:worker_threads';
import { crc32 as zlibCrc32 } from 'node:zlib';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { crc32, crc32Range, crc32Source } from '../../src/format/crc32.js';
import { REPO_ROOT } from '../support/cli.js';

describe('crc32', () => {
  it('uses the carry-less-multiply implementation where its binary exists (linux x64 here)', () => {
    if (process.platform === 'linux' && process.arch === 'x64') expect(crc32Source()).toBe('node-rs');
    expect(['node-rs', 'zlib']).toContain(crc32Source());
  });

  it('gives the catalogue check value and zlib\'s values, whole and continued, at any length and offset', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 70000 }), fc.nat(), fc.nat(), (bytes, cut, start) => {
        const data = Buffer.from(bytes);
        const view = data.subarray(start % (data.length + 1));
        expect(crc32(view)).toBe(zlibCrc32(view) >>> 0);
        const k = cut % (view.length + 1);
        expect(crc32(view.subarray(k), crc32(view.subarray(0, k)))).toBe(zlibCrc32(view) >>> 0);
      }),
      { numRuns: 300 },
    );
  });

  it('gives a range\'s crc32 as that of its view, small ranges (computed in JavaScript) and large, continued', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.nat(), fc.nat({ max: 0xffffffff }), (bytes, a, b, value) => {
        const data = Buffer.from(bytes);
        const start = a % (data.length + 1);
        const end = start + (b % (data.length - start + 1));
        // (nothing more continues a crc as it is: zlib's answers 0 for an empty buffer without memory)
        const want = (v: number) => (end > start ? zlibCrc32(data.subarray(start, end), v) >>> 0 : v);
        expect(crc32Range(data, start, end)).toBe(want(0));
        expect(crc32Range(data, start, end, value)).toBe(want(value));
        expect(crc32(data.subarray(start, end), value)).toBe(want(value));
      }),
      { numRuns: 500 },
    );
  });

  it('checksums 1 MiB payloads (as records) the same as zlib, also in a worker thread', async () => {
    const big = Buffer.alloc(1 << 20);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    expect(crc32(big)).toBe(zlibCrc32(big) >>> 0);
    // the built module in a worker thread, as compress-worker loads it (the native addon must load there too)
    const url = pathToFileURL(path.join(REPO_ROOT, 'dist', 'src', 'format', 'crc32.js')).href;
    const code = `import('${url}').then((m) => require('node:worker_threads').parentPort.postMessage([m.crc32Source(), m.crc32(Buffer.from('123456789'))]))`;
    const worker = new Worker(code, { eval: true });
    const got = await new Promise((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await worker.terminate();
    expect(got).toEqual([crc32Source(), 0xcbf43926]);
  });
});
