// Tape files sent back to back down a pipe (cat TAPE/file0001.tar TAPE/file0002.tar |
// imgstream restore --from tape:/dev/stdin), through the built CLI: restore and verify
// used to read the first tape file's stream only and exit 0, leaving the level 1 in the
// second one out without a word. Now every tape file the pipe carries is read, in order,
// as a tape's successive files: a stream passed over (another volume's, --volume) is read
// past to reach the next, and bytes after a tape file that are no tape file are damage
// (exit 9, one line), the volume being created left uncreated. catalog rebuild from such a
// pipe records its dumps as read from a pipe (they used to be recorded at /dev/stdin, a
// place nothing could be read back from), and restore --as-of says to restore from the tape.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, cliOk, sha256File } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { makeTwoVolumeTape } from '../support/two-volume-tape.js';
import { inProcessOk } from '../support/in-process.js';
import { cliWords, expectOneLineError, sh, shellQuote } from '../support/stream-cli.js';

const root = tempDir('imgstream-tape-pipe-');
const at = (f: string) => path.join(root, f);
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_CATALOG: at('catalog.json') };
const o = { env, timeoutMs: 60_000 };
let digests: Record<string, string> = {};

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  ({ digests } = await makeTwoVolumeTape(root, env, 60));
}, 120_000);

/** `cat` of the files (tape files by number, or a path) piped into `imgstream ...args`: a real pipe, as a user's. */
function piped(files: Array<number | string>, args: string[]): Promise<CliResult> {
  const paths = files.map((f) => (typeof f === 'number' ? at(`tape/file000${f}.tar`) : f));
  return sh(`cat ${paths.map(shellQuote).join(' ')} | ${cliWords(args)}`, o);
}

async function pipedJson<T>(files: Array<number | string>, args: string[]): Promise<T> {
  const r = await piped(files, [...args, '--json']);
  expect(r.code, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as T;
}

/** sha256 of the restored disk, exported in this process (a check: in-process.ts). */
async function restoredDigest(to: string): Promise<string> {
  await inProcessOk(['volume', 'export', to, '--to', `${to}.img`, '-q'], { env });
  return sha256File(`${to}.img`);
}

describe('tape files piped back to back into tape:/dev/stdin', () => {
  it('restore applies the streams of every tape file, verify checks them all', async () => {
    const r = await pipedJson<{ streams: Array<{ top: string; stream: string }> }>([1, 3], ['restore', '--from', 'tape:/dev/stdin', '--to', at('r1.vol')]);
    expect(r.streams.map((s) => s.top)).toEqual(['l0', 'l1']);
    expect(r.streams[1].stream).toBe('tape /dev/stdin (tape file 2 read)');
    expect(await restoredDigest(at('r1.vol'))).toBe(digests.a);

    const v = await pipedJson<{ streams: Array<{ top: string }> }>([1, 3], ['verify', 'tape:/dev/stdin']);
    expect(v.streams.map((s) => s.top)).toEqual(['l0', 'l1']);
  });

  it('restore --volume reads past another volume\'s tape file to the next', async () => {
    const r = await pipedJson<{ streams: Array<{ top: string }> }>([1, 2, 3], ['restore', '--from', 'tape:/dev/stdin', '--volume', at('a.vol'), '--to', at('r2.vol')]);
    expect(r.streams.map((s) => s.top)).toEqual(['l0', 'l1']);
    expect(await restoredDigest(at('r2.vol'))).toBe(digests.a);
  });

  it('catalog rebuild records the dumps as read from a pipe, not at /dev/stdin: catalog list says so, restore --as-of refuses in one line saying to restore from the tape, which works', async () => {
    const catalog = at('piped-catalog.json');
    const rb = await piped([1, 2, 3], ['catalog', 'rebuild', '--from', 'tape:/dev/stdin', '--catalog', catalog]);
    expect(rb.code, rb.stderr).toBe(0);
    expect(rb.stdout).toMatch(/^recorded [0-9a-f]{8} level 0 l0 \(a pipe \(stdin\): not readable back\)$/m);
    expect(rb.stdout).toContain('3 dump(s) read from a pipe: restore --as-of cannot read them back from there; restore them with --from the tape directory, device or file they are on (e.g. --from tape:DIR), or record where they are: imgstream catalog rebuild --from tape:DIR');
    const records = (JSON.parse(fs.readFileSync(catalog, 'utf8')) as { dumps: Array<{ level: number; media: unknown }> }).dumps;
    expect(records.map((d) => d.media)).toEqual([1, 2, 3].map(() => ({ kind: 'stdin', location: '-' })));
    // the records still count: catalog list shows them, where they were read from said plainly (it printed "file undefined")
    const list = cliOk(['catalog', 'list', '--catalog', catalog], o).stdout.trim().split('\n').slice(1);
    expect(list).toHaveLength(3);
    for (const l of list) expect(l).toMatch(/ {2}a pipe \(stdin\): not readable back$/);
    // restore --as-of: refused before anything is created, naming the pipe and the way out
    const asOf = ['restore', '--to', at('r4.vol'), '--as-of', 'l1', '--volume', at('a.vol'), '--catalog', catalog];
    const refusal = /^imgstream: dump [0-9a-f]{8} of the chain \(level 0, top snapshot "l0"\): the catalog records it as read from a pipe \(stdin\), which keeps nothing to read it back from \(restore the chain with --from the tape directory, device or files it is on, e.g\. restore --to VOL --from tape:DIR; or record where it is first: imgstream catalog rebuild --from tape:DIR\)$/;
    expectOneLineError(await sh(cliWords(asOf), o), 'restore --as-of of dumps read from a pipe', 3, refusal);
    expect(fs.existsSync(at('r4.vol'))).toBe(false);
    // a catalog an earlier imgstream rebuilt so (tape /dev/stdin without a tape file): the same
    const old = at('old-piped-catalog.json');
    const doc = JSON.parse(fs.readFileSync(catalog, 'utf8')) as { dumps: Array<{ media: unknown }> };
    for (const d of doc.dumps) d.media = { kind: 'tape', location: '/dev/stdin', tapes: ['/dev/stdin'] };
    fs.writeFileSync(old, JSON.stringify(doc));
    for (const l of cliOk(['catalog', 'list', '--catalog', old], o).stdout.trim().split('\n').slice(1)) expect(l).toMatch(/ {2}a pipe \(tape \/dev\/stdin\): not readable back$/);
    expectOneLineError(await sh(cliWords([...asOf.slice(0, -1), old]), o), 'restore --as-of of an old record of a pipe', 3, /^imgstream: dump [0-9a-f]{8} of the chain \(level 0, top snapshot "l0"\): the catalog records it as read from a pipe \(\/dev\/stdin\)/);
    expect(fs.existsSync(at('r4.vol'))).toBe(false);
    // a dump an earlier imgstream (or dump --to tape:/dev/stdout into a pipe) recorded at /dev/stdout: a pipe too
    const out = at('stdout-catalog.json');
    for (const d of doc.dumps) d.media = { kind: 'tape', location: '/dev/stdout', tapes: ['/dev/stdout'] };
    fs.writeFileSync(out, JSON.stringify(doc));
    for (const l of cliOk(['catalog', 'list', '--catalog', out], o).stdout.trim().split('\n').slice(1)) expect(l).toMatch(/ {2}a pipe \(tape \/dev\/stdout\): not readable back$/);
    expectOneLineError(await sh(cliWords([...asOf.slice(0, -1), out]), o), 'restore --as-of of dumps written to a pipe', 3, /^imgstream: dump [0-9a-f]{8} of the chain \(level 0, top snapshot "l0"\): the catalog records it as written to a pipe \(\/dev\/stdout\)/);
    // a dump to stdout (--to -) is listed as one too (it said "stdout -"), and refused the same way
    const dashOut = at('dash-catalog.json');
    for (const d of doc.dumps) d.media = { kind: 'stdout', location: '-' };
    fs.writeFileSync(dashOut, JSON.stringify(doc));
    for (const l of cliOk(['catalog', 'list', '--catalog', dashOut], o).stdout.trim().split('\n').slice(1)) expect(l).toMatch(/ {2}a pipe \(stdout\): not readable back$/);
    expectOneLineError(await sh(cliWords([...asOf.slice(0, -1), dashOut]), o), 'restore --as-of of dumps to stdout', 3, /^imgstream: dump [0-9a-f]{8} of the chain \(level 0, top snapshot "l0"\): the catalog records it as written to a pipe \(stdout\), which keeps nothing/);
    // a dump on a tape drive has no tape file number either (it printed "file undefined"): position the tape, then restore from the drive
    const drive = at('drive-catalog.json');
    for (const d of doc.dumps) d.media = { kind: 'tape', location: '/dev/nst0', tapes: ['/dev/nst0'] };
    fs.writeFileSync(drive, JSON.stringify(doc));
    for (const l of cliOk(['catalog', 'list', '--catalog', drive], o).stdout.trim().split('\n').slice(1)) expect(l).toMatch(/ {2}tape \/dev\/nst0 \(a drive: no tape file number\)$/);
    expectOneLineError(await sh(cliWords([...asOf.slice(0, -1), drive]), o), 'restore --as-of of dumps on a drive', 3, /^imgstream: dump [0-9a-f]{8} of the chain \(level 0, top snapshot "l0"\): the catalog records it on tape drive \/dev\/nst0 without a tape file number: a drive reads where it is positioned \(position the tape at the dump's tape file with mt -f \/dev\/nst0 fsf N, and restore with --from tape:\/dev\/nst0\)$/);
    // as the hint says: from the tape directory, or after recording where the dumps are
    cliOk(['restore', '--from', `tape:${at('tape')}`, '--volume', at('a.vol'), '--to', at('r4.vol'), '-q'], o);
    expect(await restoredDigest(at('r4.vol'))).toBe(digests.a);
    cliOk(['catalog', 'rebuild', '--from', `tape:${at('tape')}`, '--catalog', catalog, '-q'], o);
    cliOk([...asOf.slice(0, 2), at('r5.vol'), ...asOf.slice(3), '-q'], o);
    expect(await restoredDigest(at('r5.vol'))).toBe(digests.a);
  });

  it('bytes after a tape file that are no tape file: exit 9, one line, no volume created', async () => {
    fs.writeFileSync(at('junk'), 'not a tape file'.padEnd(1024, '!'));
    const r = await piped([1, at('junk')], ['restore', '--from', 'tape:/dev/stdin', '--to', at('r3.vol')]);
    expectOneLineError(r, 'garbage after a tape file', 9, /tape \/dev\/stdin \(after tape file 1\): damaged tar header/);
    expect(fs.existsSync(at('r3.vol'))).toBe(false);
  });
});
