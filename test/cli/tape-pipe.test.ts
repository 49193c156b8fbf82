// Tape files sent back to back down a pipe (cat TAPE/file0001.tar TAPE/file0002.tar |
// imgstream restore --from tape:/dev/stdin), through the built CLI: restore and verify
// used to read the first tape file's stream only and exit 0, leaving the level 1 in the
// second one out without a word. Now every tape file the pipe carries is read, in order,
// as a tape's successive files: a stream passed over (another volume's, --volume) is read
// past to reach the next, and bytes after a tape file that are no tape file are damage
// (exit 9, one line), the volume being created left uncreated.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliResult, cliOk, sha256File } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { makeTwoVolumeTape } from '../support/two-volume-tape.js';
import { cliWords, expectOneLineError, sh, shellQuote } from '../support/stream-cli.js';

const root = tempDir('imgstream-tape-pipe-');
const at = (f: string) => path.join(root, f);
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_CATALOG: at('catalog.json') };
const o = { env, timeoutMs: 60_000 };
let digests: Record<string, string> = {};

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(() => {
  ({ digests } = makeTwoVolumeTape(root, env, 60));
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

function restoredDigest(to: string): string {
  cliOk(['volume', 'export', to, '--to', `${to}.img`, '-q'], o);
  return sha256File(`${to}.img`);
}

describe('tape files piped back to back into tape:/dev/stdin', () => {
  it('restore applies the streams of every tape file, verify checks them all', async () => {
    const r = await pipedJson<{ streams: Array<{ top: string; stream: string }> }>([1, 3], ['restore', '--from', 'tape:/dev/stdin', '--to', at('r1.vol')]);
    expect(r.streams.map((s) => s.top)).toEqual(['l0', 'l1']);
    expect(r.streams[1].stream).toBe('tape /dev/stdin (tape file 2 read)');
    expect(restoredDigest(at('r1.vol'))).toBe(digests.a);

    const v = await pipedJson<{ streams: Array<{ top: string }> }>([1, 3], ['verify', 'tape:/dev/stdin']);
    expect(v.streams.map((s) => s.top)).toEqual(['l0', 'l1']);
  });

  it('restore --volume reads past another volume\'s tape file to the next', async () => {
    const r = await pipedJson<{ streams: Array<{ top: string }> }>([1, 2, 3], ['restore', '--from', 'tape:/dev/stdin', '--volume', at('a.vol'), '--to', at('r2.vol')]);
    expect(r.streams.map((s) => s.top)).toEqual(['l0', 'l1']);
    expect(restoredDigest(at('r2.vol'))).toBe(digests.a);
  });

  it('bytes after a tape file that are no tape file: exit 9, one line, no volume created', async () => {
    fs.writeFileSync(at('junk'), 'not a tape file'.padEnd(1024, '!'));
    const r = await piped([1, at('junk')], ['restore', '--from', 'tape:/dev/stdin', '--to', at('r3.vol')]);
    expectOneLineError(r, 'garbage after a tape file', 9, /tape \/dev\/stdin \(after tape file 1\): damaged tar header/);
    expect(fs.existsSync(at('r3.vol'))).toBe(false);
  });
});
