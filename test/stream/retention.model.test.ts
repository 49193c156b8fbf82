// Model-based test of dump and restore under what users do between dumps: random
// sequences of imports, snapshot creates (regular and shadow) and deletes (older
// snapshots of the base included, so the allocator reuses their blocks), and dumps at
// random levels 0-2; then every chain is restored, into a new volume in one go and onto
// a volume holding the chain's prefix, and checked against the model of the source at
// the time of each dump: every snapshot the source held is there with its exact image,
// none it had deleted is, the active disk is the top, and `volume check` is clean.
import fs from 'node:fs';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { importImage } from '../../src/volume/import.js';
import { exportImage } from '../../src/volume/export.js';
import { checkVolume } from '../../src/volume/check.js';
import { Catalog } from '../../src/catalog/catalog.js';
import { dumpVolume, planDump } from '../../src/stream/dump.js';
import { restoreStreams } from '../../src/stream/restore.js';
import { fileSource, fileTarget } from '../../src/media/file/file-medium.js';
import { ImgstreamError } from '../../src/errors.js';
import { exportToBuffer, memorySource, mutate, randomImage, tempDir } from '../support/images.js';

const dir = tempDir('imgstream-retention-model-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Op =
  | { kind: 'import'; changes: number; seed: number }
  | { kind: 'snapshot'; shadow: boolean }
  | { kind: 'delete'; pick: number } // mostly the oldest snapshots, as retention does
  | { kind: 'dump'; level: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('import' as const), changes: fc.integer({ min: 1, max: 60 }), seed: fc.integer({ min: 1, max: 1e9 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), shadow: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), pick: fc.nat({ max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('dump' as const), level: fc.integer({ min: 0, max: 2 }) }) },
);

interface Dumped {
  file: string;
  streamId: string;
  chain: string[]; // stream files, level 0 first
  top: string;
  /** The regular snapshots the source held at the dump, up to the top, with their images. */
  held: Map<string, Buffer>;
  /** Snapshots the source had deleted by then. */
  deleted: Set<string>;
}

let counter = 0;
/** Restored streams that dropped snapshots or staged blocks: the cases this test is about. */
let retentionCases = 0;

async function exportOf(vol: Volume, name?: string): Promise<Buffer> {
  return exportToBuffer((s) => exportImage(vol, name, s));
}

async function expectRestored(file: string, d: Dumped): Promise<void> {
  const vol = Volume.open(file, { write: false });
  try {
    const names = vol.snapshots().map((s) => s.name);
    for (const n of names) expect(d.deleted.has(n), `snapshot ${n} was deleted on the source before the dump`).toBe(false);
    expect(names).toContain(d.top);
    for (const [n, image] of d.held) {
      if (!names.includes(n)) continue; // not carried (a level 0 at a later snapshot, or a reused shadow)
      const e = vol.snapshot(n);
      if (e.shadow && e.reusedBlocks > 0) continue;
      expect((await exportOf(vol, n)).equals(image), `snapshot ${n} after restoring ${d.chain.length} stream(s)`).toBe(true);
    }
    expect((await exportOf(vol)).equals(d.held.get(d.top)!), 'active disk is the top').toBe(true);
    const rep = checkVolume(vol);
    expect([...rep.problems, ...rep.trees.flatMap((t) => t.problems)]).toEqual([]);
  } finally {
    vol.close();
  }
}

async function runSequence(ops: Op[]): Promise<number> {
  const bs = 4096;
  const blocks = 96;
  const run = path.join(dir, `run${counter++}`);
  fs.mkdirSync(run);
  const file = path.join(run, 'src.vol');
  // room for about three versions of the disk: deletes and shadows make the allocator reuse
  Volume.create(file, { size: blocks * bs, blockSize: bs, maxSnapshots: 8, volumeSize: Math.floor(blocks * 2.5) * bs });
  const catalog = new Catalog(path.join(run, 'catalog.json'));
  const model = new Map<string, { image: Buffer; shadow: boolean }>();
  const deleted = new Set<string>();
  const dumps: Dumped[] = [];
  const img = randomImage(blocks, bs, 7);
  let active = Buffer.alloc(blocks * bs);
  let n = 0;
  const vol = Volume.open(file, { write: true });
  try {
    for (const op of ops) {
      if (op.kind === 'import') {
        mutate(img, bs, op.changes, op.seed);
        try {
          await importImage(vol, memorySource(img));
          active = Buffer.from(img);
        } catch (err) {
          if (!(err instanceof ImgstreamError && err.code === 'volume-full')) throw err;
          img.set(active); // refused whole: the disk is as before
        }
      } else if (op.kind === 'snapshot') {
        if (model.size >= 6) continue;
        const name = `s${n++}`;
        vol.createSnapshot(name, { shadow: op.shadow });
        model.set(name, { image: Buffer.from(active), shadow: op.shadow });
      } else if (op.kind === 'delete') {
        const names = [...model.keys()];
        if (names.length === 0) continue;
        const name = names[op.pick % names.length];
        vol.deleteSnapshot(name);
        model.delete(name);
        deleted.add(name);
      } else {
        const regular = vol.snapshots().filter((s) => !s.shadow);
        const top = regular[regular.length - 1];
        if (!top) continue;
        // a level with no lower dump yet is a level 0, as a user's first dump is
        const level = dumps.length === 0 ? 0 : op.level;
        let plan;
        try {
          plan = planDump(vol, level, top, catalog);
        } catch (err) {
          if (err instanceof ImgstreamError) continue; // refused (base deleted, nothing new): as a user sees it
          throw err;
        }
        const out = path.join(run, `d${dumps.length}.l${level}`);
        const r = await dumpVolume(vol, () => fileTarget(out), { level, snapshot: top.name, order: 'vbn', compression: { codec: 'none' }, threads: 1, catalog });
        const base = plan.baseDump ? dumps.find((d) => d.streamId === plan.baseDump!.id) : undefined;
        const held = new Map<string, Buffer>();
        for (const s of vol.snapshots()) if (s.id <= top.id && !s.shadow) held.set(s.name, model.get(s.name)!.image);
        dumps.push({ file: out, streamId: r.streamId!, chain: [...(base?.chain ?? []), out], top: top.name, held, deleted: new Set(deleted) });
      }
    }
  } finally {
    vol.close();
  }
  for (const [i, d] of dumps.entries()) {
    // the whole chain into a new volume
    const whole = path.join(run, `r${i}.vol`);
    const res = await restoreStreams(d.chain.map(fileSource), whole);
    retentionCases += res.streams.filter((s) => s.dropped.length > 0 || s.stagedBlocks > 0).length;
    await expectRestored(whole, d);
    // the last stream onto a volume that holds the rest of the chain
    if (d.chain.length > 1) {
      const step = path.join(run, `s${i}.vol`);
      await restoreStreams(d.chain.slice(0, -1).map(fileSource), step);
      await restoreStreams([fileSource(d.chain[d.chain.length - 1])], step);
      await expectRestored(step, d);
    }
  }
  fs.rmSync(run, { recursive: true, force: true });
  return dumps.length;
}

describe('restore chains across snapshot retention, against a model', () => {
  it('every chain of random dumps between creates, deletes, shadows and imports restores exactly', async () => {
    let chains = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 12, maxLength: 36 }), async (ops) => {
        chains += await runSequence(ops);
      }),
      { numRuns: 20 },
    );
    expect(chains).toBeGreaterThan(15); // the sequences did dump
    expect(retentionCases).toBeGreaterThan(0); // and some restores dropped snapshots or staged blocks
  }, 150_000);

  it('the ordinary retention case: level 0 at s3, s1 and s2 deleted, imports, level 1 at s6', async () => {
    const ops: Op[] = [
      { kind: 'import', changes: 60, seed: 1 }, { kind: 'snapshot', shadow: false },
      { kind: 'import', changes: 60, seed: 2 }, { kind: 'snapshot', shadow: false },
      { kind: 'import', changes: 60, seed: 3 }, { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 0 },
      { kind: 'delete', pick: 0 }, { kind: 'delete', pick: 0 },
      { kind: 'import', changes: 60, seed: 4 }, { kind: 'import', changes: 60, seed: 5 }, { kind: 'import', changes: 60, seed: 6 },
      { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 1 },
      { kind: 'import', changes: 30, seed: 7 }, { kind: 'snapshot', shadow: true },
      { kind: 'import', changes: 60, seed: 8 }, { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 2 },
    ];
    const before = retentionCases;
    expect(await runSequence(ops)).toBe(3);
    expect(retentionCases).toBeGreaterThan(before);
  }, 60_000);
});
