// Paths as users give them at the edges: names of up to 255 bytes work end to end, mirrors
// included (the
// temporary files writers use beside them must not push past the limit), a name of 256
// bytes, an empty path and a missing directory are refused in one line naming the path
// the user gave (never a temporary file), and nothing is left behind.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { cliOk, runCli, stderrLines, writeImage } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';

const BS = 4096;
const root = tempDir('imgstream-long-names-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const at = (n: string) => path.join(root, n);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A name of exactly `bytes` bytes ending in `suffix`. */
const named = (stem: string, suffix: string, bytes = 255) => stem.repeat(Math.ceil(bytes / stem.length)).slice(0, bytes - suffix.length) + suffix;

describe('long and odd output paths', () => {
  it('255-byte names work for create, dump, export and restore; the data comes back exact', async () => {
    const image = writeImage(at('image.raw'), 512, BS, 3);
    const vol = at(named('v', '.vol'));
    const stream = at(named('s', '.l0'));
    const raw = at(named('r', '.raw'));
    const restored = at(named('n', '.vol'));
    cliOk(['volume', 'create', vol, '--size', String(512 * BS)], { env });
    await setupOk(['volume', 'import', vol, '--from', at('image.raw')], { env });
    cliOk(['dump', vol, '--level', '0', '--to', stream], { env });
    cliOk(['volume', 'export', vol, '--to', raw], { env });
    cliOk(['restore', '--from', stream, '--to', restored], { env });
    cliOk(['volume', 'export', restored, '--to', at('back.raw')], { env });
    // a mirror of that name, twice (the second an incremental through its side files)
    const mirror = at(named('m', '.mirror'));
    cliOk(['mirror', 'update', vol, '--to', mirror], { env });
    cliOk(['mirror', 'update', vol, '--to', mirror], { env });
    cliOk(['volume', 'export', mirror, '--to', at('mirror.raw')], { env });
    expect(fs.readFileSync(at('mirror.raw')).equals(image)).toBe(true);
    expect(fs.readFileSync(raw).equals(image)).toBe(true);
    expect(fs.readFileSync(at('back.raw')).equals(image)).toBe(true);
    expect(fs.readdirSync(root).filter((n) => n.startsWith('.')), 'no temporary file left').toEqual([]);
  });

  it('a 256-byte name, an empty path and a missing directory: one line naming the path given, nothing created', () => {
    const stream = at(named('s', '.l0'));
    const before = fs.readdirSync(root).sort();
    const cases: Array<[string[], number, RegExp]> = [
      [['volume', 'create', at(named('x', '.vol', 256)), '--size', '1M'], 4, /x+\.vol: file name too long \(at most 255 bytes per name\)/],
      [['restore', '--from', stream, '--to', at(named('y', '.vol', 256))], 4, /y+\.vol: file name too long/],
      [['restore', '--from', stream, '--to', ''], 4, /the output path is empty/],
      [['restore', '--from', stream, '--to', at('nodir/r.vol')], 3, /nodir\/r\.vol: no such directory .*nodir/],
      [['volume', 'export', at(named('v', '.vol')), '--to', at('nodir/r.raw')], 3, /nodir\/r\.raw: no such directory/],
      [['dump', at(named('v', '.vol')), '--level', '0', '--to', at(named('z', '.l0', 256))], 4, /z+\.l0: file name too long/],
    ];
    for (const [args, code, message] of cases) {
      const r = runCli(args, { env });
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(code);
      const lines = stderrLines(r);
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(message);
      expect(lines[0]).not.toMatch(/restoring-|partial-|imgstream-new-|internal error/);
    }
    expect(fs.readdirSync(root).sort()).toEqual(before);
  });
});
