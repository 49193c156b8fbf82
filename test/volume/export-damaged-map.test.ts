// A map block that lost its entries (zeroed on disk, or written over) made an export of
// the disk as it should have read "16 MiB, 0 blocks mapped": zeros, exit 0. The map's
// block count is kept with it (volume check compares them too): export compares them and
// refuses a damaged map with exit 9, leaving no output file.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { randomImage, tempDir } from '../support/images.js';
import { inProcess, setupOk } from '../support/in-process.js';
import { Volume } from '../../src/volume/volume.js';

const BS = 4096;
const root = tempDir('imgstream-export-damaged-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks') };
const at = (n: string) => path.join(root, n);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('volume export of a damaged map', () => {
  it('is refused with exit 9 naming the counts, and leaves no output', async () => {
    const vol = at('v.vol');
    await setupOk(['volume', 'create', vol, '--size', `${256 * BS}`], { env });
    fs.writeFileSync(at('x.raw'), randomImage(256, BS, 3, 0));
    await setupOk(['volume', 'import', vol, '--from', at('x.raw')], { env });
    await setupOk(['snapshot', 'create', vol, 's1'], { env });
    // a second image after s1: the active map is another tree, left whole
    fs.writeFileSync(at('y.raw'), randomImage(256, BS, 4, 0));
    await setupOk(['volume', 'import', vol, '--from', at('y.raw')], { env });
    const v = Volume.open(vol, { write: false });
    const { mapRoot } = v.snapshot('s1');
    const offset = v.layout.vbnOffset(mapRoot);
    v.close();
    const fd = fs.openSync(vol, 'r+');
    fs.writeSync(fd, Buffer.alloc(BS), 0, BS, offset); // one map block of 512 entries: every block of s1
    fs.closeSync(fd);
    const r = await inProcess(['volume', 'export', `${vol}@s1`, '--to', at('s1.raw')], { env });
    expect(r.code, r.stderr).toBe(9);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/the map of snapshot s1 holds 0 blocks where its record counts 256: the volume is damaged/);
    expect(fs.existsSync(at('s1.raw'))).toBe(false);
    expect(fs.readdirSync(root).filter((n) => n.startsWith('.s1.raw'))).toEqual([]);
    // the active disk's map is whole: it exports
    const ok = await inProcess(['volume', 'export', vol, '--to', at('active.raw')], { env });
    expect(ok.code, ok.stderr).toBe(0);
    expect(fs.readFileSync(at('active.raw')).equals(fs.readFileSync(at('y.raw')))).toBe(true);
  });
});
