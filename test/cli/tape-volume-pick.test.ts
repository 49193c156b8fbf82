// restore --from tape:DIR --volume on a tape of plain dumps of two volumes, through the
// built CLI: a plain dump's tape label names no volume, so --volume used to be ignored
// there and the first volume's dumps were restored whatever it named. Now each stream's
// header picks: by uuid (or a prefix), by the path of the volume there now, or by the
// path the catalog records after that volume is gone; a volume with no dump on the tape
// is refused (exit 3, one line naming whose dumps the tape holds) and nothing appears.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, cliOk, runCli, sha256File } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { makeTwoVolumeTape } from '../support/two-volume-tape.js';
import { expectOneLineError } from '../support/stream-cli.js';
import { inProcessJson, inProcessOk } from '../support/in-process.js';

const root = tempDir('imgstream-tape-pick-');
const at = (f: string) => path.join(root, f);
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_CATALOG: at('catalog.json') };
const o = { env, timeoutMs: 60_000 };
const tape = `tape:${at('tape')}`;
let uuids: Record<string, string> = {};
let digests: Record<string, string> = {};

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  ({ digests, uuids } = await makeTwoVolumeTape(root, env, 40));
}, 120_000);

/** sha256 of the restored disk, exported in this process (a check: in-process.ts). */
async function restoredDigest(to: string): Promise<string> {
  await inProcessOk(['volume', 'export', to, '--to', `${to}.img`, '-q'], { env });
  return sha256File(`${to}.img`);
}

describe('restore --volume from a tape of plain dumps', () => {
  it('takes only the named volume\'s streams: by path, by uuid prefix, and by the catalog\'s path once the volume is gone', async () => {
    const byPath = cliJson<{ streams: Array<{ top: string }> }>(['restore', '--from', tape, '--volume', at('a.vol'), '--to', at('ra.vol')], o);
    expect(byPath.streams.map((s) => s.top)).toEqual(['l0', 'l1']);
    expect(await restoredDigest(at('ra.vol'))).toBe(digests.a);
    expect((await inProcessJson<{ uuid: string }>(['volume', 'info', at('ra.vol')], { env })).uuid).toBe(uuids.a);

    const byUuid = cliJson<{ streams: Array<{ top: string }> }>(['restore', '--from', tape, '--volume', uuids.b.slice(0, 8), '--to', at('rb.vol')], o);
    expect(byUuid.streams.map((s) => s.top)).toEqual(['l0']);
    expect(await restoredDigest(at('rb.vol'))).toBe(digests.b);
    expect((await inProcessJson<{ uuid: string }>(['volume', 'info', at('rb.vol')], { env })).uuid).toBe(uuids.b);

    // the source volume is gone: the catalog knows whose dumps were taken at that path
    fs.renameSync(at('b.vol'), at('b.moved'));
    try {
      cliOk(['restore', '--from', tape, '--volume', at('b.vol'), '--to', at('rb2.vol'), '-q'], o);
      expect(await restoredDigest(at('rb2.vol'))).toBe(digests.b);
    } finally {
      fs.renameSync(at('b.moved'), at('b.vol'));
    }
  });

  it('refuses a volume with no dump on the tape in one line naming whose it holds, and creates nothing', () => {
    for (const [what, selector] of [['a uuid', 'ffff0000'], ['a path', at('none.vol')]] as const) {
      const r = runCli(['restore', '--from', tape, '--volume', selector, '--to', at('rn.vol')], o);
      const line = expectOneLineError(r, `--volume ${what}`, 3, /no dump of volume .* in tape .*: it holds .*file 1 \(volume [0-9a-f]{8}\)/);
      expect(line).toContain(uuids.a.slice(0, 8));
      expect(line).toContain(uuids.b.slice(0, 8));
      expect(fs.existsSync(at('rn.vol')), what).toBe(false);
    }
    expect(fs.readdirSync(root).filter((f) => f.includes('rn.vol'))).toEqual([]);
  });

  it('a tape directory with a file gone from the middle is refused naming it, before anything is read; the other files still read alone', () => {
    const gap = at('gap-tape');
    fs.cpSync(at('tape'), gap, { recursive: true });
    fs.rmSync(path.join(gap, 'file0002.tar'));
    for (const args of [['restore', '--from', `tape:${gap}`, '--to', at('rg.vol')], ['verify', `tape:${gap}`]]) {
      const line = expectOneLineError(runCli(args, o), args[0], 3, /tape .*gap-tape: tape file 2 is missing \(it holds 2 of files 1 to 3\) \(put it back, or read the files there one by one: tape:.*#N\)/);
      expect(line).not.toMatch(/base snapshot/);
    }
    expect(fs.existsSync(at('rg.vol'))).toBe(false);
    cliOk(['verify', `tape:${gap}#3`], o);
  });
});
