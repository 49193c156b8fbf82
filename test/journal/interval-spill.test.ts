// An interval keeps up to 128 MiB of block data in memory; past that, its blocks are
// read from the journal's segments when it is shipped. An overflow in the server deletes
// every segment but the new one, possibly while such an interval is collected or in
// flight: the protect process then exited 3 on "…NNN.seg: no such file or directory".
// Now a segment an interval leaves blocks in is opened as the first one is left there (an
// open file still reads once deleted), and one deleted before that makes the interval
// unshippable: the shipper starts a new session from what the destination holds instead.
// IMGSTREAM_TEST_HELD_BYTES lowers the memory limit so a small journal spills.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { JournalWriter } from '../../src/journal/journal-writer.js';
import { JournalReader } from '../../src/journal/journal-reader.js';
import { journalDirOf, listSegments } from '../../src/journal/journal-files.js';
import { IntervalBuilder, SegmentDroppedError } from '../../src/journal/interval-builder.js';
import { LocalProtectDestination } from '../../src/journal/local-destination.js';
import { protect, type ProtectEvent } from '../../src/journal/shipper.js';
import type { IntervalBlock } from '../../src/journal/destination-api.js';
import { inProcessOk } from '../support/in-process.js';
import { tempDir } from '../support/images.js';

const dir = tempDir('imgstream-interval-spill-');
const locks = path.join(dir, 'locks');
const held = process.env.IMGSTREAM_TEST_HELD_BYTES;
const lockDir = process.env.IMGSTREAM_LOCK_DIR;
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  vi.restoreAllMocks();
  if (held === undefined) delete process.env.IMGSTREAM_TEST_HELD_BYTES;
  else process.env.IMGSTREAM_TEST_HELD_BYTES = held;
  if (lockDir === undefined) delete process.env.IMGSTREAM_LOCK_DIR;
  else process.env.IMGSTREAM_LOCK_DIR = lockDir;
});

const BS = 4096;
const BLOCKS = 1024;
/** 1 MiB kept in memory: 256 blocks, the rest left in the segments. */
const HELD = String(1 << 20);

/** Block `lbn`'s content in round `round`: every block and round distinct. */
function blockOf(lbn: number, round: number): Buffer {
  const b = Buffer.alloc(BS, (lbn * 7 + round) & 0xff);
  b.writeUInt32LE(lbn, 0);
  b.writeUInt32LE(round, 4);
  return b;
}

/** Writes `count` distinct blocks to the volume through its journal (as the NBD server does), in CPs. */
function writeJournaled(file: string, round: number, count: number): void {
  const vol = Volume.open(file, { write: true });
  try {
    const w = JournalWriter.open(vol, { segmentBytes: 1 << 20 });
    try {
      for (let i = 0; i < count; i++) {
        const lbn = (i * 37 + round) % BLOCKS;
        const data = blockOf(lbn, round);
        vol.writeLogical(lbn, data);
        w.wrote(lbn * BS, data);
        if (i % 200 === 199) vol.commit();
      }
      vol.commit();
    } finally {
      w.close();
    }
  } finally {
    vol.close();
  }
}

function newVolume(name: string): string {
  const file = path.join(dir, `${name}.vol`);
  Volume.create(file, { size: BLOCKS * BS, blockSize: BS });
  return file;
}

async function collect(blocks: AsyncIterable<IntervalBlock>): Promise<Map<number, Buffer | null>> {
  const got = new Map<number, Buffer | null>();
  for await (const b of blocks) got.set(b.lbn, b.data && Buffer.from(b.data));
  return got;
}

describe('an interval larger than what it keeps in memory, under an overflow', () => {
  it('its segments deleted after it collected them: every block still reads, from the segments it holds open', async () => {
    process.env.IMGSTREAM_TEST_HELD_BYTES = HELD;
    const file = newVolume('after');
    writeJournaled(file, 1, 700);
    const jd = journalDirOf(file);
    expect(listSegments(jd).length, 'the records span segments').toBeGreaterThanOrEqual(3);
    const b = new IntervalBuilder(BS, 0);
    const r = new JournalReader(jd, listSegments(jd)[0].firstSeq);
    for (let rec = r.next(); rec !== null; rec = r.next()) b.add(rec);
    r.close();
    // what an overflow does (here to all of them)
    for (const s of listSegments(jd)) fs.rmSync(s.path);
    const got = await collect(b.build(1, 0, 1, []).blocks);
    b.release();
    expect(got.size).toBe(700);
    for (const [lbn, data] of got) expect(data?.equals(blockOf(lbn, 1)), `block ${lbn}`).toBe(true);
  });

  it('a segment deleted before the interval opened it: the interval says so when shipped, and holds no descriptor once released', async () => {
    process.env.IMGSTREAM_TEST_HELD_BYTES = HELD;
    const file = newVolume('before');
    writeJournaled(file, 2, 700);
    const jd = journalDirOf(file);
    const b = new IntervalBuilder(BS, 0);
    const r = new JournalReader(jd, listSegments(jd)[0].firstSeq);
    let blocks = 0;
    for (let rec = r.next(); rec !== null; rec = r.next()) {
      // the 257th block is the first left in a segment: the overflow comes just before
      if (blocks + rec.count > 256 && fs.existsSync(rec.segment)) for (const s of listSegments(jd)) fs.rmSync(s.path);
      b.add(rec);
      blocks += rec.count;
    }
    r.close();
    const opened = fs.readdirSync('/proc/self/fd').length;
    await expect(collect(b.build(1, 0, 1, []).blocks)).rejects.toThrow(SegmentDroppedError);
    b.release();
    expect(fs.readdirSync('/proc/self/fd').length).toBeLessThanOrEqual(opened);
  });

  it('the shipper, its interval unshippable, starts again from what the destination holds and ships it whole', async () => {
    process.env.IMGSTREAM_LOCK_DIR = locks;
    const file = newVolume('ship');
    writeJournaled(file, 3, 50);
    const dest = path.join(dir, 'ship.cdp');
    const events: ProtectEvent[] = [];
    const run = () => protect({ volume: file, destination: new LocalProtectDestination(dest), intervalMs: 100, keepMs: null, signal: new AbortController().signal, once: true }, (e) => events.push(e));
    expect((await run()).seeded).toBe(true);
    writeJournaled(file, 4, 700);
    process.env.IMGSTREAM_TEST_HELD_BYTES = HELD;
    // the interval's first open of a segment finds it gone, as after an overflow that came between
    const real = fs.openSync;
    let failed = 0;
    vi.spyOn(fs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: unknown[]) => {
      if (failed === 0 && String(p).endsWith('.seg') && /interval-builder/.test(new Error().stack ?? '')) {
        failed++;
        throw Object.assign(new Error(`ENOENT: no such file or directory, open '${String(p)}'`), { code: 'ENOENT' });
      }
      return (real as (...a: unknown[]) => number)(p, ...rest);
    }) as typeof fs.openSync);
    const sum = await run();
    expect(failed, 'the race was forced').toBe(1);
    expect(events.some((e) => e.event === 'waiting' && /deleted by an overflow of the journal.*starting again/.test(e.reason)), 'said, not silent').toBe(true);
    expect(sum.intervals).toBeGreaterThanOrEqual(1);
    vi.restoreAllMocks();
    const st = JSON.parse(await inProcessOk(['protect', 'status', dest, '--json'], { env: { IMGSTREAM_LOCK_DIR: locks } }).then((r) => r.stdout)) as { window: { end: string } };
    await inProcessOk(['volume', 'export', dest, '--as-of', st.window.end, '--to', path.join(dir, 'dest.raw')], { env: { IMGSTREAM_LOCK_DIR: locks } });
    await inProcessOk(['volume', 'export', file, '--to', path.join(dir, 'src.raw')], { env: { IMGSTREAM_LOCK_DIR: locks } });
    expect(fs.readFileSync(path.join(dir, 'dest.raw')).equals(fs.readFileSync(path.join(dir, 'src.raw'))), 'the destination holds the disk exactly').toBe(true);
  });
});
