// The pieces of multiplexed tape files below the CLI: the tar header codec the reader
// seeks with (against tar-stream's own headers), the backup log's round trip, and the
// writer's channels: a source given up mid-stream leaves its parts behind an aborted
// member that readers refuse by name, while the others read back whole; a fast source
// is not held up by a slow one.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { CorruptError } from '../../src/core/errors.js';
import { MultiplexTapeWriter, indexMultiplexFile, tapeSource } from '../../src/media/index.js';
import { readMultiplexedParts } from '../../src/media/tape/multiplex-reader.js';
import { decodeBackupLog, encodeBackupLog, type BackupLog } from '../../src/media/tape/multiplex-format.js';
import { decodeTarHeader } from '../../src/media/tape/tar-header.js';
import { streamBytes } from './stream-data.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-muxfmt-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

async function tarStreamHeader(name: string, size: number): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  pack.on('data', (c: unknown) => chunks.push(c as Buffer));
  const ended = new Promise<void>((r) => pack.on('end', () => r()));
  pack.entry({ name, size, mode: 0o644, mtime: new Date(0), type: 'file' }, Buffer.alloc(size));
  pack.finalize();
  await ended;
  return Buffer.concat(chunks).subarray(0, 512);
}

describe('tar headers', () => {
  it('decodes what tar-stream writes, and refuses a header with one byte changed', async () => {
    const name = `imgstream/${'a'.repeat(36)}/part-000017`;
    const h = await tarStreamHeader(name, 1048576);
    expect(decodeTarHeader(h)).toEqual({ name, size: 1048576, type: 'file' });
    for (const at of [0, 50, 124, 130, 148, 300]) {
      const bad = Buffer.from(h);
      bad[at] ^= 0x01;
      expect(decodeTarHeader(bad), `byte ${at}`).toBeNull();
    }
    expect(decodeTarHeader(Buffer.alloc(512))).toBeNull();
  });
});

describe('backup log', () => {
  const log: BackupLog = {
    header: { format: 'imgstream-backup-log', version: 1, id: 'mux-1', sequence: 1, recordSize: 10240, host: 'h', started: '2026-01-01T00:00:00.000Z', finished: '2026-01-01T00:00:01.000Z', idleMs: 12, sources: [{ source: 0, volume: { path: 'a.vol', uuid: 'u' }, streamId: 's0', status: 'complete', parts: 1, bytes: 5 }] },
    entries: [{ source: 0, stream: 's0', kind: 'part', seq: 0, time: '2026-01-01T00:00:00.500Z', waitedMs: 3, size: 5, offset: 1024, record: 0 }],
  };
  it('round-trips as JSON lines, and a damaged log decodes to null (readers then walk the members)', () => {
    const b = encodeBackupLog(log);
    expect(b.toString().split('\n')).toHaveLength(3);
    expect(decodeBackupLog(b.toString())).toEqual(log);
    expect(decodeBackupLog(b.toString().replace('"offset":1024', '"offset":"x"'))).toBeNull();
    expect(decodeBackupLog(b.toString().slice(0, 40))).toBeNull();
  });
});

describe('the multiplexed writer', () => {
  it('a source given up mid-stream: its parts stay behind an aborted member, readers name it, the others read back whole', async () => {
    const dir = path.join(root, 'abort');
    const w = new MultiplexTapeWriter({ tapes: [dir], id: 'mux-abort', sources: ['a.vol', 'b.vol'], partBytes: 4096 });
    const a = w.channel(0, 'stream-a', { path: 'a.vol', uuid: 'ua' });
    const b = w.channel(1, 'stream-b', { path: 'b.vol', uuid: 'ub' });
    const da = streamBytes(20_000, 1);
    await b.write(streamBytes(9000, 2));
    await a.write(da.subarray(0, 7000));
    await new Promise((r) => setTimeout(r, 20)); // let the writer take b's parts
    await b.abort();
    w.sourceFailed(1, 'b.vol: read error');
    await a.write(da.subarray(7000));
    const pos = await a.finish();
    expect(pos).toMatchObject({ kind: 'tape', tapeFile: 1, stream: 'stream-a' });
    const ref = { name: 'tape file 1', path: path.join(dir, 'file0001.tar') };
    const index = indexMultiplexFile(ref, { bytes: 0 });
    expect(index.log!.header.sources.map((s) => [s.status, s.error ?? null])).toEqual([['complete', null], ['aborted', 'b.vol: read error']]);
    expect(index.members.filter((m) => m.streamId === 'stream-b').map((m) => m.kind)).toEqual(['label', 'part', 'part', 'aborted']);
    const read = async (id: string) => {
      const chunks: Buffer[] = [];
      const gen = readMultiplexedParts(ref, index, id, { parts: 0, bytes: 0, streamId: null }, { bytes: 0 });
      for await (const c of gen) chunks.push(c);
      return Buffer.concat(chunks);
    };
    expect((await read('stream-a')).equals(da)).toBe(true);
    await expect(read('stream-b')).rejects.toThrow(CorruptError);
    await expect(read('stream-b')).rejects.toThrow(/stream-b \(b\.vol\) is incomplete: its dump failed \(b\.vol: read error\)/);
    // the tape source yields both; the reader of b fails by name
    const names: string[] = [];
    for await (const s of tapeSource({ tapes: [dir] }).streams()) names.push(s.name);
    expect(names).toEqual(['tape ' + dir + ' file 1 (a.vol [ua])', 'tape ' + dir + ' file 1 (b.vol [ub])']);
  });

  it('takes whichever source has a part ready: a slow source does not hold up a fast one, and a fast one waits only on its own queue', async () => {
    const dir = path.join(root, 'order');
    const w = new MultiplexTapeWriter({ tapes: [dir], id: 'mux-order', sources: ['fast', 'slow'], partBytes: 1024, queueParts: 2 });
    const fast = w.channel(0, 'fast', { path: 'fast', uuid: 'f' });
    const slow = w.channel(1, 'slow', { path: 'slow', uuid: 's' });
    const slowDone = (async () => {
      for (let i = 0; i < 4; i++) {
        await slow.write(Buffer.alloc(1024, 1));
        await new Promise((r) => setTimeout(r, 40));
      }
      return slow.finish();
    })();
    for (let i = 0; i < 40; i++) await fast.write(Buffer.alloc(1024, 2));
    const fastFinished = fast.finish();
    await Promise.all([fastFinished, slowDone]);
    const index = indexMultiplexFile({ name: 'f', path: path.join(dir, 'file0001.tar') }, { bytes: 0 });
    const order = index.members.filter((m) => m.kind === 'part').map((m) => m.streamId);
    // every fast part is on tape before the slow source's last one was even ready
    const lastFast = order.lastIndexOf('fast');
    expect(order.slice(lastFast + 1).every((s) => s === 'slow')).toBe(true);
    expect(order.filter((s) => s === 'slow').length).toBe(4);
    expect(order.indexOf('slow')).toBeLessThan(lastFast);
  });
});
