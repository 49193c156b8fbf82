// A stream file is read into buffers used again once the consumer gives them back
// (SourceStream.recycle): records are views into them, so a buffer must not be read into
// while a view of it is still in use; nor may the reader's own buffers for records that
// span two reads. A level 0 of 24 MiB (six 4 MiB reads and more).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli, sha256 } from '../support/cli.js';
import { randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { dump, exportShas, ok } from '../support/stream-cli.js';
import { fileBytes } from '../../src/media/file/file-medium.js';
import { readImageStream } from '../../src/stream/stream-reader.js';
import { isDirectAligned } from '../../src/fs/direct-io.js';

const BS = 4096;
const BLOCKS = 6144; // 24 MiB
const root = tempDir('imgstream-read-buffers-');
const o = { env: { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') } };
const vol = path.join(root, 'src.vol');
const l0 = path.join(root, 'src.l0');
const image = randomImage(BLOCKS, BS, 4242, 0.05);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  await setupOk(['volume', 'create', vol, '--size', `${(BLOCKS * BS) >> 20}M`], o);
  fs.writeFileSync(path.join(root, 'image.raw'), image);
  await setupOk(['volume', 'import', vol, '--from', path.join(root, 'image.raw'), '-q'], o);
  await setupOk(['snapshot', 'create', vol, 's1', '-q'], o);
  dump(vol, 0, 's1', l0, path.join(root, 'catalog.json'), ['--compress', 'none'], o);
  expect(fs.statSync(l0).size).toBeGreaterThan(5 * (4 << 20));
}, 120_000);

/** Every DATA record of the stream, read with `after(buf)` as the release of each read buffer; with the buffers the records were views of. */
async function readData(after: (buf: Buffer) => Promise<void>): Promise<Array<{ vbns: number[]; data: Buffer; copy: Buffer }>> {
  const src = fileBytes(l0);
  const out: Array<{ vbns: number[]; data: Buffer; copy: Buffer }> = [];
  const release = (buf: Buffer) => {
    const done = after(buf);
    src.recycle!(buf, done); // the read buffers; the reader reuses its own (records across two reads) after `done` too
    return done;
  };
  for await (const rec of readImageStream(src.bytes, l0, release)) {
    if (rec.type === 'data') out.push({ vbns: rec.vbns, data: rec.data, copy: Buffer.from(rec.data) });
  }
  return out;
}

describe('read buffers of a stream file', () => {
  it('are not read into again while the consumer still holds views of them', async () => {
    const never = new Promise<void>(() => {});
    const records = await readData(() => never);
    expect(records.length).toBeGreaterThan(20);
    for (const [i, r] of records.entries()) expect(r.data.equals(r.copy), `record ${i + 1} changed under its reader`).toBe(true);
  });

  it('are used again once given back, and the records stay right', async () => {
    const records = await readData(() => Promise.resolve());
    // views copied as they came equal the data of a read that never gives a buffer back
    const kept = await readData(() => new Promise<void>(() => {}));
    expect(records.map((r) => sha256(r.copy))).toEqual(kept.map((r) => sha256(r.copy)));
    // the read buffers the records are views of (a record across two reads is a copy)
    const reads = (rs: typeof records) => new Set(rs.map((r) => r.data.buffer).filter((b) => b.byteLength === 4 << 20)).size;
    const distinct = reads(records);
    const fresh = reads(kept);
    expect(fresh).toBeGreaterThanOrEqual(6);
    expect(distinct).toBeLessThanOrEqual(4); // the two being read and consumed, and what comes back between
  });

  it('hold every block of the uncompressed stream in page-aligned memory, spanning records too: a restore writes them with direct I/O as they are', async () => {
    const records = await readData(() => Promise.resolve());
    const spans = records.filter((r) => r.data.buffer.byteLength !== 4 << 20);
    expect(spans.length).toBeGreaterThan(0); // some records span two reads and were copied
    for (const [i, r] of records.entries()) expect(isDirectAligned(r.data), `record ${i + 1} at byte offset ${r.data.byteOffset}`).toBe(true);
  });

  it('serve a restore from stdin redirected from the stream file too, and from a pipe', async () => {
    for (const [name, how] of [['redirect', { stdinFile: l0 }], ['pipe', { input: fs.readFileSync(l0) }]] as const) {
      const dst = path.join(root, `stdin-${name}.vol`);
      const r = runCli(['restore', '--from', '-', '--to', dst, '--json'], { ...how, env: o.env });
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).streams[0].stream).toBe('stdin');
      expect((await exportShas(dst, ['s1'], o)).s1, name).toBe(sha256(image));
    }
  });

  it('a restore that writes behind from them restores every block, with writes slower than reads', async () => {
    const dst = path.join(root, 'dst.vol');
    ok(['restore', '--from', l0, '--to', dst, '-q'], { env: { ...o.env, IMGSTREAM_SLOW_WRITES: '30' } });
    expect((await exportShas(dst, ['s1'], o)).s1).toBe(sha256(image));
  });
});
