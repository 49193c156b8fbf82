// Blocks a restore brings arrive without the allocator; they must still be marked in the
// recording mark-on-allocate plane (DESIGN: the planes record every allocation), or a
// mirror of the restored volume would not ship them with its next incremental update.
// Checked through the CLI and the volume's planes: after an incremental restore, every
// block of the stream (its DATA blocks and its map blocks sent as deltas) is marked.
// (A mirror update between two restores is refused by the next restore: the mirror's
// snapshot takes an id the chain's next snapshot has, which the test shows too.)
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { dump, expectOneLineError, ok } from '../support/stream-cli.js';
import { runCli } from '../support/cli.js';
import { setupOk } from '../support/in-process.js';
import { readImageStream } from '../../src/stream/stream-reader.js';
import { Volume } from '../../src/volume/volume.js';
import { PLANE_MOA } from '../../src/volume/layout.js';

const BS = 4096;
const BLOCKS = 2048; // 8 MiB logical disk
const root = tempDir('imgstream-restored-source-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json'), IMGSTREAM_MIRROR_STATE: path.join(root, 'mirrors.json') };
const o = { env, timeoutMs: 60_000 };
const p = (n: string) => path.join(root, n);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** The VBNs an image stream brings: DATA blocks and MAPDELTA nodes. */
async function streamVbns(file: string): Promise<number[]> {
  const out: number[] = [];
  for await (const r of readImageStream(fs.createReadStream(file) as AsyncIterable<Buffer>, file)) {
    if (r.type === 'data') out.push(...r.vbns);
    if (r.type === 'mapdelta') out.push(...r.nodes.map((n) => n.vbn));
  }
  return out;
}

/** VBNs among `vbns` not set in the volume's recording mark-on-allocate plane. */
function unmarked(file: string, vbns: number[]): number[] {
  const vol = Volume.open(file, { write: false });
  try {
    const plane = PLANE_MOA[vol.rootRecord.moaCurrent];
    return vbns.filter((v) => !vol.testBit(plane, v));
  } finally {
    vol.close();
  }
}

describe('restores mark what they bring in the mark-on-allocate plane', () => {
  it('every block of an incremental restore is marked, so a mirror ships it', async () => {
    const a = p('a.vol');
    const b = p('b.vol');
    await setupOk(['volume', 'create', a, '--size', `${(BLOCKS * BS) >> 20}M`, '--max-snapshots', '8'], { env });
    const img = randomImage(BLOCKS, BS, 501);
    for (const [i, s] of ['s1', 's2'].entries()) {
      if (i > 0) mutate(img, BS, 100, 501 + i);
      fs.writeFileSync(p('img.raw'), img);
      await setupOk(['volume', 'import', a, '--from', p('img.raw'), '-q'], { env });
      await setupOk(['snapshot', 'create', a, s, '-q'], { env });
      dump(a, i, s, p(`a.${s}`), p('catalog.json'), [], o);
    }
    ok(['restore', '--from', p('a.s1'), '--to', b, '-q'], o);
    ok(['restore', '--from', p('a.s2'), '--to', b, '-q'], o);
    const brought = await streamVbns(p('a.s2'));
    expect(brought.length).toBeGreaterThan(50);
    expect(unmarked(b, brought)).toEqual([]);
    expect(unmarked(b, await streamVbns(p('a.s1')))).toEqual([]);

    // a mirror of B takes a snapshot of B's own, after the chain's base: the next stream is refused, naming it
    ok(['mirror', 'update', b, '--to', p('m.vol'), '-q'], o);
    mutate(img, BS, 20, 510);
    fs.writeFileSync(p('img.raw'), img);
    await setupOk(['volume', 'import', a, '--from', p('img.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', a, 's3', '-q'], { env });
    dump(a, 2, 's3', p('a.s3'), p('catalog.json'), [], o);
    const before = fs.readFileSync(b);
    expectOneLineError(runCli(['restore', '--from', p('a.s3'), '--to', b], o), 'restore after a mirror snapshot', 4, /snapshot "mirror\.[^"]+" taken after this stream's base snapshot "s2"/);
    expect(fs.readFileSync(b).equals(before)).toBe(true);
  }, 120_000);
});
