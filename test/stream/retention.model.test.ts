// Model-based test of dump and restore under what users do between dumps: random
// sequences of imports, snapshot creates (regular and shadow), deletes (older snapshots
// of the base included, so the allocator reuses their blocks), snapshots made shadow ones
// (the tops of dumps included: `snapshot shadow`, whose blocks are reused), and dumps at
// random levels 0-2; then every chain is restored, into a new volume in one go and onto
// a volume holding the chain's prefix, and checked against the model of the source at
// the time of each dump: every snapshot the source held is there with its exact image,
// none it had deleted is, the active disk is the top, and `volume check` is clean. Half
// of the restores onto a prefix first fail half way (their stream cut short) and must
// leave the prefix as it was. And as a standby is kept: one replica gets every dump as
// it is taken (a new one at each level 0), a level 1 after a level 2 included.
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
import { ImgstreamError } from '../../src/core/errors.js';
import { exportToBuffer, memorySource, mutate, randomImage, tempDir } from '../support/images.js';
import { modelRuns } from '../support/model-runs.js';

const dir = tempDir('imgstream-retention-model-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

type Op =
  | { kind: 'import'; changes: number; seed: number; breakAt?: number } // breakAt: the source fails after that fraction
  | { kind: 'snapshot'; shadow: boolean }
  | { kind: 'delete'; pick: number } // mostly the oldest snapshots, as retention does
  | { kind: 'shadow'; pick: number } // a regular snapshot made a shadow one, the base of the next dump included
  | { kind: 'dump'; level: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('import' as const), changes: fc.integer({ min: 10, max: 90 }), seed: fc.integer({ min: 1, max: 1e9 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('import' as const), changes: fc.integer({ min: 30, max: 96 }), seed: fc.integer({ min: 1, max: 1e9 }), breakAt: fc.double({ min: 0.1, max: 0.95, noNaN: true }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), shadow: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), pick: fc.nat({ max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('shadow' as const), pick: fc.nat({ max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('dump' as const), level: fc.integer({ min: 0, max: 2 }) }) },
);

interface Dumped {
  file: string;
  streamId: string;
  level: number;
  chain: string[]; // stream files, level 0 first
  top: string;
  /** The regular snapshots the source held at the dump, up to the top, with their images. */
  held: Map<string, Buffer>;
  /** Snapshots the source had deleted by then. */
  deleted: Set<string>;
}

/**
 * A day of a retention schedule: the disk changes, a snapshot is taken (sometimes a
 * shadow one), the oldest snapshots may go, and a dump may run. Sequences of days hit the
 * restore cases this test is about far more often than free-form operation lists.
 */
const dayArb: fc.Arbitrary<Op[]> = fc
  .record({ changes: fc.integer({ min: 10, max: 90 }), seed: fc.integer({ min: 1, max: 1e9 }), shadow: fc.boolean(), expire: fc.integer({ min: 0, max: 2 }), bookmark: fc.boolean(), dump: fc.option(fc.integer({ min: 0, max: 2 }), { nil: null }) })
  .map((d) => [
    { kind: 'import', changes: d.changes, seed: d.seed },
    { kind: 'snapshot', shadow: d.shadow && d.seed % 3 === 0 },
    // the oldest go, or (bookmark) the oldest regular one, a dump's base too, is made a shadow one
    ...Array.from({ length: d.expire }, () => ({ kind: d.bookmark ? 'shadow' : 'delete', pick: 0 }) as Op),
    ...(d.dump === null ? [] : [{ kind: 'dump', level: d.dump } as Op]),
  ] as Op[]);

/** A pipe that breaks after `at` of the image: the import fails half way, after writing some of it. */
function brokenSource(img: Buffer, at: number) {
  const stop = Math.floor(img.length * at);
  return { name: 'pipe', rereadable: false, async *open() {
    for (let o = 0; o < stop; o += 8 * 4096) yield img.subarray(o, Math.min(stop, o + 8 * 4096));
    throw new Error('source broke');
  } };
}

let counter = 0;
/** Restored streams that dropped snapshots or staged blocks: the cases this test is about. */
let retentionCases = 0;
/** Of those, restores whose staged blocks went in the CP's journal (the volume had room). */
let sameCpStaging = 0;
/** And those that dropped the deleted snapshots in a CP of their own first (no room to journal the staged blocks). */
let fallbacks = 0;
/** Snapshots made shadow ones, and dumps whose base was a shadow snapshot with blocks reused. */
let shadowed = 0;
let reusedBases = 0;
/** Streams onto the chain before them that rewrote blocks of its active disk in place (no room to replace a shadow snapshot's blocks at once). */
let inPlaceSteps = 0;
/** Restores onto a chain's prefix that failed half way first (their stream cut short). */
let brokenRestores = 0;
/** Dumps applied to the replica that got every dump as taken, and those whose base is older than the replica's top (a level 1 after a level 2). */
let replicaSteps = 0;
let replicaDifferentials = 0;
/** Level 1s refused by the replica because a level 0 of an older snapshot started it (the replica started over from their chain). */
let replicaRebuilt = 0;

async function exportOf(vol: Volume, name?: string): Promise<Buffer> {
  return exportToBuffer((s) => exportImage(vol, name, s));
}

function snapshotsOf(file: string): string[] {
  const vol = Volume.open(file, { write: false });
  try {
    return vol.snapshots().map((s) => s.name);
  } finally {
    vol.close();
  }
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

async function runSequence(ops: Op[], dayVolume = false): Promise<number> {
  const bs = 4096;
  const blocks = 96;
  const run = path.join(dir, `run${counter++}`);
  fs.mkdirSync(run);
  const file = path.join(run, 'src.vol');
  // room for about three versions of the disk: deletes and shadows make the allocator reuse;
  // as many slots as the model keeps snapshots: a replica at a prefix may have every slot in use
  Volume.create(file, { size: blocks * bs, blockSize: bs, maxSnapshots: 6, volumeSize: (dayVolume ? blocks * 4 : Math.floor(blocks * 2.2)) * bs });
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
          await importImage(vol, op.breakAt === undefined ? memorySource(img) : brokenSource(img, op.breakAt), undefined, { chunkBytes: 8 * bs });
          active = Buffer.from(img);
        } catch (err) {
          if (!(err instanceof ImgstreamError && err.code === 'volume-full') && !(op.breakAt !== undefined && /source broke/.test(String(err)))) throw err;
          img.set(active); // refused or failed whole: the disk is as before
        }
        // a shadow snapshot counted intact reads as it was taken (blocks a failed import took from it too)
        for (const s of vol.snapshots()) {
          if (s.shadow && s.reusedBlocks === 0) expect((await exportOf(vol, s.name)).equals(model.get(s.name)!.image), `intact shadow snapshot ${s.name}`).toBe(true);
        }
      } else if (op.kind === 'snapshot') {
        if (model.size >= 6) continue;
        const name = `s${n++}`;
        vol.createSnapshot(name, { shadow: op.shadow });
        model.set(name, { image: Buffer.from(active), shadow: op.shadow });
      } else if (op.kind === 'delete') {
        // as a retention policy does, keep the snapshots later incrementals build on (the
        // tops of the newest dump at each level); older ones go, their blocks reused
        const bases = new Set([0, 1, 2].map((l) => dumps.filter((d) => d.level === l).at(-1)?.top));
        const names = [...model.keys()].filter((n) => !bases.has(n) || op.pick === 3);
        if (names.length === 0) continue;
        const name = names[op.pick % names.length];
        vol.deleteSnapshot(name);
        model.delete(name);
        deleted.add(name);
      } else if (op.kind === 'shadow') {
        // any regular snapshot, the tops of dumps (later levels' bases) included; mostly the oldest
        const names = vol.snapshots().filter((s) => !s.shadow).map((s) => s.name);
        if (names.length === 0) continue;
        const name = names[op.pick % names.length];
        vol.shadowSnapshot(name);
        model.get(name)!.shadow = true;
        shadowed++;
      } else {
        // the newest snapshot a dump may take as its top: a shadow one too, while it is intact
        const dumpable = vol.snapshots().filter((s) => !s.shadow || s.reusedBlocks === 0);
        const top = dumpable[dumpable.length - 1];
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
        if (plan.base?.shadow && plan.base.reusedBlocks > 0) reusedBases++;
        const out = path.join(run, `d${dumps.length}.l${level}`);
        const r = await dumpVolume(vol, () => fileTarget(out), { level, snapshot: top.name, order: 'vbn', compression: { codec: 'none' }, threads: 1, catalog });
        const base = plan.baseDump ? dumps.find((d) => d.streamId === plan.baseDump!.id) : undefined;
        const held = new Map<string, Buffer>();
        for (const s of vol.snapshots()) if (s.id <= top.id && (!s.shadow || s.id === top.id)) held.set(s.name, model.get(s.name)!.image);
        dumps.push({ file: out, streamId: r.streamId!, level, chain: [...(base?.chain ?? []), out], top: top.name, held, deleted: new Set(deleted) });
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
    sameCpStaging += res.streams.filter((s) => s.stagedBlocks > 0 && !s.separateDropCp).length;
    fallbacks += res.streams.filter((s) => s.separateDropCp).length;
    await expectRestored(whole, d);
    // the last stream onto a volume that holds the rest of the chain
    if (d.chain.length > 1) {
      const step = path.join(run, `s${i}.vol`);
      await restoreStreams(d.chain.slice(0, -1).map(fileSource), step);
      // every other one first fails half way (its stream cut short, as a dropped connection
      // or a tape read error would): the volume is as the chain before left it
      if (i % 2 === 1) {
        const cut = path.join(run, `cut${i}`);
        const whole = fs.readFileSync(d.chain[d.chain.length - 1]);
        fs.writeFileSync(cut, whole.subarray(0, Math.floor(whole.length * (0.2 + ((i * 37) % 70) / 100))));
        await expect(restoreStreams([fileSource(cut)], step)).rejects.toThrow(ImgstreamError);
        brokenRestores++;
        await expectRestored(step, dumps.find((x) => x.file === d.chain[d.chain.length - 2])!);
      }
      // blocks the source reused that this volume's active disk holds (a shadow snapshot's)
      // go in the CP's journal, or without room there in place, the restore marked
      // unfinished until its last CP
      const last = await restoreStreams([fileSource(d.chain[d.chain.length - 1])], step);
      if (last.streams.some((s) => (s.activeInPlace ?? 0) > 0)) inPlaceSteps++;
      await expectRestored(step, d);
    }
  }
  // a standby: every dump onto one replica as it is taken (a new replica at each level 0)
  let replica: string | null = null;
  let applied: Dumped | null = null;
  for (const [i, d] of dumps.entries()) {
    // a level 0 of an older snapshot than a level 0 before it (the newer one's top had its
    // blocks reused) started this replica, and the next level 1 builds on the newer one:
    // refused, naming its base, and the replica unchanged; the standby starts over from its chain
    const base = d.chain.length > 1 ? dumps.find((x) => x.file === d.chain[d.chain.length - 2])!.top : null;
    // (one whose top the replica holds already is passed over, below)
    const has = replica === null ? [] : snapshotsOf(replica);
    // a dump of a snapshot older than the replica's newest (a level 1 whose top is older than
    // the level 2 before it: that one's top had its blocks reused since, so it was not
    // dumpable): a restore never takes a volume back, the replica is unchanged; the standby
    // starts over from that dump's chain (later ones build on it)
    const taken = (name: string) => Number(name.slice(1)); // s0, s1…: in the order they were taken
    if (replica !== null && d.level > 0 && has.some((x) => taken(x) > taken(d.top))) {
      await expect(restoreStreams([fileSource(d.file)], replica)).rejects.toThrow(ImgstreamError);
      await expectRestored(replica, applied!);
      replica = null;
      replicaRebuilt++;
    } else if (replica !== null && base !== null && !has.includes(base) && !has.includes(d.top)) {
      await expect(restoreStreams([fileSource(d.file)], replica)).rejects.toThrow(/its base snapshot "[^"]+" is not on/);
      await expectRestored(replica, applied!);
      replica = null;
      replicaRebuilt++;
    }
    if (d.level === 0 || replica === null) {
      replica = path.join(run, `replica${i}.vol`);
      await restoreStreams(d.chain.map(fileSource), replica);
    } else {
      if (d.chain.length > 1 && dumps.find((x) => x.file === d.chain[d.chain.length - 2])!.top !== applied?.top) replicaDifferentials++;
      const res = await restoreStreams([fileSource(d.file)], replica);
      if (res.streams.length === 0) {
        // its top is there already (the same snapshot dumped again): passed over, the replica as it was
        expect(res.held).toHaveLength(1);
        await expectRestored(replica, applied!);
        continue;
      }
    }
    applied = d;
    replicaSteps++;
    await expectRestored(replica, d);
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
      { numRuns: modelRuns(6), endOnFailure: true, ...(process.env.IMGSTREAM_MODEL_SEED1 ? { seed: Number(process.env.IMGSTREAM_MODEL_SEED1), path: process.env.IMGSTREAM_MODEL_PATH1 } : {}) },
    );
    expect(chains).toBeGreaterThan(2); // the sequences did dump (how often depends on the seed: 5 in 6 runs was seen)
  }, 150_000);

  it('every chain of a random retention schedule (daily snapshots, oldest expired, dumps at random levels) restores exactly', async () => {
    const before = { retentionCases, sameCpStaging, shadowed, brokenRestores };
    await fc.assert(
      fc.asyncProperty(fc.array(dayArb, { minLength: 6, maxLength: 14 }), async (days) => {
        await runSequence(days.flat(), true);
      }),
      // a fixed seed: the assertions below count cases that a random seed reaches only most of the time
      { numRuns: 12, endOnFailure: true, seed: Number(process.env.IMGSTREAM_MODEL_SEED ?? 20261204) },
    );
    // restores did drop snapshots the source had deleted, and staged blocks in the CP's journal
    // (counted with the fixed seed: another one, given to replay or explore, may reach them or not)
    if (process.env.IMGSTREAM_MODEL_SEED === undefined) {
      expect(retentionCases).toBeGreaterThan(before.retentionCases);
      expect(sameCpStaging).toBeGreaterThan(before.sameCpStaging);
      expect(shadowed, 'snapshots made shadow ones').toBeGreaterThan(before.shadowed);
      expect(brokenRestores, 'restores that failed half way').toBeGreaterThan(before.brokenRestores);
    }
  }, 150_000);

  it('a level 1 whose base, the level 0\'s top, was made a shadow snapshot and had blocks reused restores exactly', async () => {
    const before = { shadowed, reusedBases, inPlaceSteps };
    const ops: Op[] = [
      { kind: 'import', changes: 90, seed: 1 }, { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 0 },
      { kind: 'shadow', pick: 0 },
      { kind: 'import', changes: 90, seed: 2 }, { kind: 'snapshot', shadow: false },
      { kind: 'import', changes: 90, seed: 3 }, { kind: 'import', changes: 90, seed: 4 }, { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 1 },
      { kind: 'import', changes: 40, seed: 5 }, { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 2 },
    ];
    expect(await runSequence(ops)).toBe(3);
    expect(shadowed).toBe(before.shadowed + 1);
    expect(reusedBases, 'the level 1 was taken from a base with blocks reused').toBe(before.reusedBases + 1);
    expect(inPlaceSteps, 'the level 1 onto the level 0, without room to replace s0\'s reused blocks at once, rewrote the active disk in place').toBe(before.inPlaceSteps + 1);
  }, 60_000);

  it('a standby that got every dump as taken: a level 1 after a level 2, the level 1\'s top made a shadow snapshot at the source and its blocks reused, applies exactly', async () => {
    const before = { replicaSteps, replicaDifferentials, shadowed };
    const ops: Op[] = [
      { kind: 'import', changes: 90, seed: 1 }, { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 0 },
      { kind: 'import', changes: 30, seed: 2 }, { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 1 },
      { kind: 'import', changes: 30, seed: 3 }, { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 2 },
      { kind: 'shadow', pick: 1 },
      { kind: 'import', changes: 90, seed: 4 }, { kind: 'import', changes: 90, seed: 5 }, { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 1 },
    ];
    expect(await runSequence(ops)).toBe(4);
    expect(shadowed).toBe(before.shadowed + 1);
    expect(replicaSteps).toBe(before.replicaSteps + 4);
    expect(replicaDifferentials, 'the last level 1 went onto a replica at the level 2\'s top').toBe(before.replicaDifferentials + 1);
  }, 60_000);

  // found by a random run (seed 1505076240 path 5): s4, taken as a shadow snapshot, lost
  // its map root to an import that failed (volume full) and was thrown away, which set the
  // root's bit in s4's plane again; the level 2 on it sent s5's root as a delta from that
  // overwritten node, and the receiver applied it to s4's true root: s5 had 9 blocks of s4's
  // contents. A shadow base that lost blocks is now the base of no map delta.
  it('a level 2 whose base, a shadow snapshot, lost its map root to an import thrown away (its plane bit set again) restores exactly: its map travels whole', async () => {
    const ops: Op[] = [
      { kind: 'import', changes: 44, seed: 225441312 }, { kind: 'import', changes: 64, seed: 936097202 },
      { kind: 'snapshot', shadow: false },
      { kind: 'import', changes: 72, seed: 569146915, breakAt: 0.1598660638966302 },
      { kind: 'delete', pick: 2 },
      { kind: 'snapshot', shadow: false }, { kind: 'snapshot', shadow: true },
      { kind: 'import', changes: 86, seed: 17935919 },
      { kind: 'dump', level: 2 },
      { kind: 'import', changes: 79, seed: 648273533, breakAt: 0.6524165642565439 },
      { kind: 'import', changes: 57, seed: 391239866, breakAt: 0.17260214964579987 },
      { kind: 'dump', level: 0 },
      { kind: 'snapshot', shadow: true }, { kind: 'import', changes: 23, seed: 523185238 }, { kind: 'snapshot', shadow: true },
      { kind: 'dump', level: 0 },
      { kind: 'import', changes: 81, seed: 113953075 }, { kind: 'import', changes: 34, seed: 513839999 }, { kind: 'import', changes: 33, seed: 841253854 },
      { kind: 'snapshot', shadow: false },
      { kind: 'import', changes: 84, seed: 208199937 }, { kind: 'import', changes: 26, seed: 446202645 },
      { kind: 'dump', level: 2 },
    ];
    await runSequence(ops);
  }, 60_000);

  // found by a random run (seed 520124195 path 4): the second level 0 went to s1, the third
  // to s0 (s1 and s2 had blocks reused: not dumpable), and the level 1 after it built on s1,
  // the newer top: a standby started from the third level 0 lacks s1 and refuses it
  it('a standby started from a level 0 of an older snapshot refuses the level 1 built on a newer one, naming its base, and is unchanged', async () => {
    const before = replicaRebuilt;
    const ops: Op[] = [
      { kind: 'delete', pick: 2 }, { kind: 'snapshot', shadow: true },
      { kind: 'dump', level: 2 },
      { kind: 'import', changes: 22, seed: 508163617 }, { kind: 'snapshot', shadow: true },
      { kind: 'dump', level: 2 },
      { kind: 'import', changes: 62, seed: 433829778 }, { kind: 'import', changes: 13, seed: 849835556 }, { kind: 'import', changes: 75, seed: 65269135 },
      { kind: 'dump', level: 0 },
      { kind: 'snapshot', shadow: true },
      { kind: 'import', changes: 85, seed: 129315827 }, { kind: 'import', changes: 26, seed: 418697138 },
      { kind: 'shadow', pick: 0 },
      { kind: 'import', changes: 35, seed: 536235476 }, { kind: 'import', changes: 37, seed: 470114209, breakAt: 0.43206656165877355 },
      { kind: 'dump', level: 0 },
      { kind: 'snapshot', shadow: false },
      { kind: 'dump', level: 1 },
    ];
    expect(await runSequence(ops)).toBe(5);
    expect(replicaRebuilt).toBe(before + 1);
  }, 60_000);

  it('the ordinary retention case: level 0 at s3, s1 and s2 deleted, imports, level 1 at s6', async () => {
    const staged = sameCpStaging + fallbacks;
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
    expect(sameCpStaging + fallbacks).toBeGreaterThan(staged); // blocks landed on s1's and s2's VBNs
  }, 60_000);
});
