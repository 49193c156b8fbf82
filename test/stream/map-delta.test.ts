// MAPDELTA records (format/image-stream.ts): an incremental dump sends the map blocks it
// carries as differences from its base's tree. Checked here: a level 1 after a spread-out
// change sends its map leaves as deltas (and is that much smaller), restores to exports
// identical to the source's and a clean check; and streams rewritten with valid checksums
// but a hostile MAPDELTA (a base VBN the base snapshot does not hold, a target VBN the
// volume uses, a MAPDELTA in a full stream, one without the feature bit) are refused with
// one line, and the volume keeps its last CP (nothing it uses is touched).
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { changesOutsideFreeSpace, dump, exportShas, expectClean, expectOneLineError, ok, snapshotNames } from '../support/stream-cli.js';
import { encodeData, encodeMapDeltas, encodePlane, FEATURE_MAPDELTA, type MapDelta } from '../../src/format/image-stream.js';
import { readImageStream, type StreamRecord } from '../../src/stream/stream-reader.js';
import { ImageStreamWriter } from '../../src/stream/stream-writer.js';

const BS = 4096;
const BLOCKS = 4096; // 16 MiB logical disk: 8 map leaves of 512 entries
const root = tempDir('imgstream-mapdelta-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 60_000 };
const p = (n: string) => path.join(root, n);

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Reads a stream file into its records (checked by the reader on the way). */
async function records(file: string): Promise<StreamRecord[]> {
  const out: StreamRecord[] = [];
  for await (const r of readImageStream(fs.createReadStream(file) as AsyncIterable<Buffer>, file)) out.push(r);
  return out;
}

/** Writes records as a complete stream with valid checksums (the writer's own), after `edit`. */
async function rewrite(recs: StreamRecord[], file: string, opts: { mapDeltas: boolean; edit?: (nodes: MapDelta[]) => MapDelta[]; header?: (h: any) => any }): Promise<void> {
  const chunks: Buffer[] = [];
  const target = { description: file, write: async (b: Buffer) => void chunks.push(Buffer.from(b)), finish: async () => ({ medium: 'file', path: file }) as any, abort: async () => {} };
  const w = new ImageStreamWriter(target, { compression: { codec: 'none' }, threads: 1, mapDeltas: opts.mapDeltas });
  for (const r of recs) {
    if (r.type === 'header') await w.start(opts.header ? opts.header(structuredClone(r.header)) : r.header);
    else if (r.type === 'plane') await w.plane(encodePlane(r.snapshotIndex, r.chunks, r.chunks.map((_, i) => r.data.subarray(i * BS, (i + 1) * BS)), BS));
    else if (r.type === 'data') await w.data(encodeData(r.vbns, r.data, BS), r.vbns.length, r.data.length);
    else if (r.type === 'mapdelta') {
      const nodes = opts.edit ? opts.edit(r.nodes) : r.nodes;
      await w.mapDeltas(encodeMapDeltas(nodes), nodes.length);
    }
  }
  await w.finish();
  fs.writeFileSync(file, Buffer.concat(chunks));
}

describe('MAPDELTA records in incremental streams', () => {
  const src = p('src.vol');
  let l1: ReturnType<typeof dump>;
  let l1Recs: StreamRecord[];

  beforeAll(async () => {
    await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) >> 20}M`, '--max-snapshots', '8'], { env });
    const img = randomImage(BLOCKS, BS, 71, 0.1);
    fs.writeFileSync(p('img.raw'), img);
    await setupOk(['volume', 'import', src, '--from', p('img.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', src, 's1', '-q'], { env });
    mutate(img, BS, 40, 72); // 1%, spread over every leaf
    fs.writeFileSync(p('img.raw'), img);
    await setupOk(['volume', 'import', src, '--from', p('img.raw'), '-q'], { env });
    await setupOk(['snapshot', 'create', src, 's2', '-q'], { env });
    dump(src, 0, 's1', p('l0'), p('catalog.json'), ['--compress', 'none'], o);
    l1 = dump(src, 1, 's2', p('l1'), p('catalog.json'), ['--compress', 'none'], o);
    l1Recs = await records(p('l1'));
  }, 60_000);

  it('a level 1 sends the changed map leaves as deltas and stays the size of the change', async () => {
    // 40 changed blocks over 8 leaves: every leaf and the root change, and all go as deltas
    expect(l1.mapDeltaBlocks).toBeGreaterThanOrEqual(8);
    expect(l1.blocks - l1.mapDeltaBlocks).toBeGreaterThan(20); // the changed blocks not made zero
    const whole = l1.blocks - l1.mapDeltaBlocks;
    // the data blocks whole, the plane of s2 (a block), frames: no map leaf whole
    expect(l1.streamBytes).toBeLessThan(whole * BS + 2 * BS + 64 * 1024);
    const nodes = l1Recs.flatMap((r) => (r.type === 'mapdelta' ? r.nodes : []));
    expect(nodes).toHaveLength(l1.mapDeltaBlocks);
    const dataVbns = new Set(l1Recs.flatMap((r) => (r.type === 'data' ? r.vbns : [])));
    for (const n of nodes) expect(dataVbns.has(n.vbn)).toBe(false);
    const v = ok(['verify', p('l0'), p('l1'), '--json'], o);
    expect(JSON.parse(v.stdout).blocks).toBe(JSON.parse(ok(['catalog', 'list', '--json'], o).stdout).dumps.reduce((a: number, d: { blocks: number }) => a + d.blocks, 0));
  });

  it('the chain restores to exports identical to the source, and checks clean', async () => {
    const dst = p('dst.vol');
    ok(['restore', '--from', p('l0'), '--from', p('l1'), '--to', dst, '-q'], o);
    expect(await snapshotNames(dst, o)).toEqual(['s1', 's2']);
    expect(await exportShas(dst, ['s1', 's2'], o)).toEqual(await exportShas(src, ['s1', 's2'], o));
    await expectClean(dst, o);
  });

  describe('hostile MAPDELTA records with valid checksums', () => {
    const base = p('base.vol');
    let before = Buffer.alloc(0);
    beforeAll(() => {
      ok(['restore', '--from', p('l0'), '--to', base, '-q'], o);
      before = fs.readFileSync(base);
    });
    // a failed restore may have written into space the last CP does not use; nothing else
    const unchanged = () => expect(changesOutsideFreeSpace(before, base).violations).toEqual([]);

    const refused = (file: string, pattern: RegExp) => {
      for (const cmd of [['restore', '--from', file, '--to', base], ['verify', p('l0'), file]]) {
        const r = runCli(cmd, o);
        if (cmd[0] === 'verify' && !/MAPDELTA/.test(pattern.source)) continue; // verify reads no volume: it cannot tell
        expectOneLineError(r, `${cmd[0]} ${path.basename(file)}`, 9, pattern);
      }
      unchanged();
    };

    it('a base VBN the base snapshot does not hold', async () => {
      await rewrite(l1Recs, p('bad-base'), { mapDeltas: true, edit: (ns) => ns.map((n, i) => (i === 0 ? { ...n, base: BLOCKS * 2 } : n)) });
      refused(p('bad-base'), /base snapshot "s1" does not hold/);
    });

    it('a map block aimed at a VBN the volume uses', async () => {
      // the base node's own VBN: held by s1, so writing there would damage it
      await rewrite(l1Recs, p('bad-target'), { mapDeltas: true, edit: (ns) => ns.map((n, i) => (i === 0 ? { ...n, vbn: n.base } : n)) });
      const r = runCli(['restore', '--from', p('bad-target'), '--to', base], o);
      expectOneLineError(r, 'restore bad-target', 4, /would overwrite /);
      unchanged();
    });

    it('MAPDELTA records in a stream that does not announce the feature', async () => {
      await rewrite(l1Recs, p('no-feature'), { mapDeltas: true });
      const b = fs.readFileSync(p('no-feature'));
      expect(b.readUInt32LE(12) & FEATURE_MAPDELTA).toBe(FEATURE_MAPDELTA);
      // clear the bit: the preamble is in the chain, so the trailer no longer matches
      // either; the reader stops at the first MAPDELTA record, before the trailer
      b.writeUInt32LE(b.readUInt32LE(12) & ~FEATURE_MAPDELTA, 12);
      fs.writeFileSync(p('no-feature'), b);
      refused(p('no-feature'), /MAPDELTA record \d+ in a stream that does not announce them/);
    });

    it('a MAPDELTA record in a full stream', async () => {
      await rewrite(l1Recs, p('full-with-delta'), { mapDeltas: true, header: (h) => ({ ...h, base: null, level: 0 }) });
      const r = runCli(['verify', p('full-with-delta')], o);
      expectOneLineError(r, 'verify full-with-delta', 9, /MAPDELTA record \d+ in a full stream/);
    });

    it('after all that, the good level 1 still applies', async () => {
      ok(['restore', '--from', p('l1'), '--to', base, '-q'], o);
      expect(await exportShas(base, ['s1', 's2'], o)).toEqual(await exportShas(src, ['s1', 's2'], o));
      await expectClean(base, o);
    });
  });
});
