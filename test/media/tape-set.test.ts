// Tape sets and tape targets that fail, at the library level: a set whose tape after one
// whose last dump goes on is not that dump's next tape (another set's, the same tape under
// another name, a copy) is refused before any stream is read, while a tape file whose end
// cannot be told is left to the reader; a failing tape target removes the directories it
// made for new tapes (only those, only when empty) and fails with a named error when the
// tape is full. A tape of a set that lost its first tape file is named as missing that
// file, as when it is given alone.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CorruptError, InvalidInputError, IoError, NotFoundError } from '../../src/core/errors.js';
import { tapeSource, tapeTarget, type TapeTargetOptions } from '../../src/media/index.js';
import { readAll, streamBytes, writeInPieces } from './stream-data.js';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'imgstream-tape-set-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));
const at = (f: string) => path.join(root, f);
const tapeSize = 1_200_000;

async function dump(opts: TapeTargetOptions, data: Buffer): Promise<void> {
  const t = tapeTarget(opts);
  await writeInPieces(t, data, [300_000]);
  await t.finish();
}

/** Reads the set; fails the test if any stream was handed out before the error. */
async function refusedBeforeReading(tapes: string[]): Promise<unknown> {
  const it = tapeSource({ tapes }).streams()[Symbol.asyncIterator]();
  return it.next().then(
    (r) => new Error(`a stream was read: ${r.done ? 'none (done)' : r.value.name}`),
    (err: unknown) => err,
  );
}

describe('a tape set with a tape of another set', () => {
  beforeAll(async () => {
    await dump({ tapes: [at('x1'), at('x2')], tapeSize, streamId: 'x' }, streamBytes(1_800_000, 1));
    await dump({ tapes: [at('y1'), at('y2')], tapeSize, streamId: 'y' }, streamBytes(1_800_000, 2));
  });

  it('reads the right set', async () => {
    expect((await readAll([tapeSource({ tapes: [at('x1'), at('x2')] })])).map((s) => s.bytes.length)).toEqual([1_800_000]);
  });

  it('refuses tape 1 of another dump, an empty tape, the same tape by a link or as a copy, before reading', async () => {
    const other = await refusedBeforeReading([at('x1'), at('y1')]);
    expect(other).toBeInstanceOf(InvalidInputError);
    expect(String(other)).toMatch(/tape .*y1 \(tape 1 of dump y\) is given after tape .*x1, whose last tape file \(tape 1 of dump x\) goes on on tape 2 of that dump: it is not part of this set/);
    fs.mkdirSync(at('blank'));
    expect(String(await refusedBeforeReading([at('x1'), at('blank')]))).toMatch(/blank \(empty\) is given after tape .*x1/);
    fs.symlinkSync(at('x1'), at('x1-link'));
    expect(String(await refusedBeforeReading([at('x1'), at('x1-link')]))).toMatch(/x1-link is given twice \(as tapes 1 and 2 of the set: it is the same directory as .*x1\)/);
    fs.cpSync(at('x1'), at('x1-copy'), { recursive: true });
    expect(String(await refusedBeforeReading([at('x1'), at('x1-copy')]))).toMatch(/x1-copy \(tape 1 of dump x\) is given as tape 2 of the set, but tape .*x1, given as tape 1, begins with the same tape file/);
    // a tape whose last dump ends may be followed by any set's first tape
    expect((await readAll([tapeSource({ tapes: [at('y1'), at('y2'), at('x1'), at('x2')] })])).length).toBe(2);
  });

  it('leaves a tape file whose end it cannot tell (cut short) to the reader, which names the damage', async () => {
    fs.cpSync(at('x1'), at('x1-cut'), { recursive: true });
    const file = path.join(at('x1-cut'), 'file0001.tar');
    fs.truncateSync(file, fs.statSync(file).size - 20_480);
    await expect(readAll([tapeSource({ tapes: [at('x1-cut'), at('y1')] })])).rejects.toThrow(CorruptError);
  });
});

describe('a tape set whose last tape lost its first tape file', () => {
  it('is refused as that tape alone is: the file is named missing (not-found), not the tape as another set\'s', async () => {
    const set = [at('m1'), at('m2'), at('m3')];
    await dump({ tapes: set, tapeSize, streamId: 'm' }, streamBytes(2_600_000, 8));
    // a later dump appended to the last tape: its file 2
    await dump({ tapes: [set[2]], streamId: 'm-next' }, streamBytes(1000, 9));
    expect(fs.readdirSync(set[2])).toEqual(['file0001.tar', 'file0002.tar']);
    fs.rmSync(path.join(set[2], 'file0001.tar'));
    const alone = await tapeSource({ tapes: [set[2]] }).precheck!().then(() => null, (err: unknown) => err);
    const inSet = await tapeSource({ tapes: set }).precheck!().then(() => null, (err: unknown) => err);
    for (const err of [alone, inSet]) {
      expect(err).toBeInstanceOf(NotFoundError);
      expect(String(err)).toMatch(/tape .*m3: tape file 1 is missing \(it holds 1 of files 1 to 2\)/);
    }
  });
});

describe('a failing tape target', () => {
  it('removes the tape directories it made, and only while they are empty', async () => {
    await dump({ tapes: [at('held')], streamId: 'held' }, streamBytes(1000, 3));
    const made = at('new/a/b');
    const t = tapeTarget({ tapes: [made, at('held')], tapeSize, partBytes: 65536, streamId: 'refused', newTape: true });
    await expect(writeInPieces(t, streamBytes(1_800_000, 4), [300_000])).rejects.toThrow(/already holds 1 tape file/);
    expect(fs.existsSync(at('new'))).toBe(false);

    // something else put in a directory it made stays, and so does that directory
    fs.mkdirSync(at('kept'));
    const t2 = tapeTarget({ tapes: [at('kept/a/b'), at('held')], tapeSize, partBytes: 65536, streamId: 'refused2', newTape: true });
    await writeInPieces(t2, streamBytes(300_000, 5), [300_000]);
    fs.writeFileSync(at('kept/a/note'), 'mine');
    await expect(writeInPieces(t2, streamBytes(1_500_000, 6), [300_000])).rejects.toThrow(InvalidInputError);
    expect(fs.readdirSync(at('kept/a'))).toEqual(['note']);
  });

  it.runIf(fs.existsSync('/dev/full'))('fails with a named error on a full tape device', async () => {
    const t = tapeTarget({ tapes: ['/dev/full'], streamId: 'full' });
    const failed = (async () => {
      await writeInPieces(t, streamBytes(3_000_000, 7), [300_000]);
      await t.finish();
    })();
    await expect(failed).rejects.toThrow(IoError);
    await expect(failed).rejects.toThrow(/tape device \/dev\/full: no space left/);
  });
});
