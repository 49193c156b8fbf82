// The journal reader against a writer that deletes segments between the reader's listing
// and its open (an overflow drops every segment but the new one; a destination that holds
// a segment whole lets it go): the segment gone is a gap for the shipper to find, never an
// error that stops protection (a rehearsal's protect-link saw the shipper exit 3 on
// "…/0000000000000451.seg: no such file or directory"). The race is forced by failing the
// reader's next open of a segment with ENOENT, as the deletion would.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { JournalWriter } from '../../src/journal/journal-writer.js';
import { JournalReader } from '../../src/journal/journal-reader.js';
import { journalDirOf, listSegments } from '../../src/journal/journal-files.js';
import { RecordKind } from '../../src/journal/record.js';
import { tempDir } from '../support/images.js';

const dir = tempDir('imgstream-journal-race-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

const BS = 4096;

/** A journal of two segments or more: 300 block writes, a CP marker that rolls the segment, 50 more. */
function twoSegments(name: string): { dir: string; first: number; last: number } {
  const file = path.join(dir, `${name}.vol`);
  Volume.create(file, { size: 1024 * BS, blockSize: BS });
  const vol = Volume.open(file, { write: true });
  try {
    const w = JournalWriter.open(vol, { segmentBytes: 1 << 20 });
    const block = Buffer.alloc(BS, 7);
    for (let i = 0; i < 300; i++) w.wrote((i % 1024) * BS, block);
    w.afterCp(vol.rootRecord.generation);
    for (let i = 0; i < 50; i++) w.wrote(i * BS, block);
    const last = w.lastSeq;
    w.close();
    const jd = journalDirOf(file);
    expect(listSegments(jd).length).toBeGreaterThanOrEqual(2);
    return { dir: jd, first: listSegments(jd)[0].firstSeq, last };
  } finally {
    vol.close();
  }
}

/** Makes the next openSync of a journal segment fail with ENOENT, as if it were deleted just before. */
function segmentGoneOnNextOpen(): void {
  const real = fs.openSync;
  let armed = true;
  vi.spyOn(fs, 'openSync').mockImplementation(((p: fs.PathLike, ...rest: unknown[]) => {
    if (armed && String(p).endsWith('.seg')) {
      armed = false;
      throw Object.assign(new Error(`ENOENT: no such file or directory, open '${String(p)}'`), { code: 'ENOENT' });
    }
    return (real as (...a: unknown[]) => number)(p, ...rest);
  }) as typeof fs.openSync);
}

function readAll(r: JournalReader): number[] {
  const seqs: number[] = [];
  for (let rec = r.next(); rec !== null; rec = r.next()) seqs.push(rec.seq);
  return seqs;
}

describe('journal reader: a segment deleted under it', () => {
  it('the next segment gone as the reader moves to it: no record yet (not an error), then on from where it was once it is back', () => {
    const j = twoSegments('advance');
    const second = listSegments(j.dir)[1].firstSeq;
    const r = new JournalReader(j.dir, j.first, { damageAtTail: 'throw' });
    while (r.nextSeq < second) expect(r.next(), 'the first segment reads whole').not.toBeNull();
    segmentGoneOnNextOpen();
    expect(r.next(), 'the segment it moves to is gone: nothing to read, no error').toBeNull();
    expect(r.gap(), 'the records are still there').toBe(false);
    // (the open failed once: the files are all there, so the reader goes on)
    const rest = readAll(r);
    expect(rest[0]).toBe(second);
    expect(rest.at(-1)).toBe(j.last);
  });

  it('the segment gone as the reader first opens it: no record, and once an overflow has deleted it, gap() says records were dropped', () => {
    const j = twoSegments('first');
    const r = new JournalReader(j.dir, j.first, { damageAtTail: 'throw' });
    segmentGoneOnNextOpen();
    expect(r.next()).toBeNull();
    // what the overflow did: every segment but the newest deleted
    const segs = listSegments(j.dir);
    for (const s of segs.slice(0, -1)) fs.rmSync(s.path);
    expect(r.next()).toBeNull();
    expect(r.gap(), 'the shipper resyncs from here').toBe(true);
    // a reader from the newest segment reads its records (a change, after the CP marker)
    const newest = new JournalReader(j.dir, segs.at(-1)!.firstSeq);
    const kinds: RecordKind[] = [];
    for (let rec = newest.next(); rec !== null; rec = newest.next()) kinds.push(rec.kind);
    expect(kinds).toContain(RecordKind.Data);
  });
});
