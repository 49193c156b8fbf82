// Model-based test of mirroring under what users do between updates: random sequences of
// writes, snapshot creates (regular and shadow), regular snapshots made shadow ones, and
// deletes (so the allocator reuses blocks, shadow ones included), imports and writes that
// fail half way, updates, and updates cut part way. After every update the destination
// must hold exactly what the source held (its active disk and every snapshot that is still
// a consistent image), after a cut one it must be exactly as before, and `volume check`
// must be clean on both.
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Volume } from '../../src/volume/volume.js';
import { exportImage } from '../../src/volume/export.js';
import { importImage } from '../../src/volume/import.js';
import { checkVolume } from '../../src/volume/check.js';
import { ImgstreamError } from '../../src/core/errors.js';
import { localDestination, MirrorState, sendMirror, type MirrorResult } from '../../src/mirror/index.js';
import { exportToBuffer, randomImage, rng, tempDir } from '../support/images.js';
import { cutAfter } from '../support/cut-channel.js';
import { modelRuns } from '../support/model-runs.js';

const dir = tempDir('imgstream-mirror-model-');
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
const BS = 4096;
const BLOCKS = 128;

type Op =
  | { kind: 'write'; count: number; seed: number; failAt?: number } // failAt: the writer gives up after that many blocks (no CP)
  | { kind: 'import'; seed: number; breakAt: number } // a whole new image from a pipe that breaks part way
  | { kind: 'snapshot'; shadow: boolean }
  | { kind: 'shadow'; pick: number } // a regular snapshot made a shadow one (snapshot shadow)
  | { kind: 'delete'; pick: number }
  | { kind: 'update'; cut?: number };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('write' as const), count: fc.integer({ min: 5, max: 80 }), seed: fc.integer({ min: 1, max: 1e9 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('write' as const), count: fc.integer({ min: 20, max: 120 }), seed: fc.integer({ min: 1, max: 1e9 }), failAt: fc.integer({ min: 1, max: 100 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('import' as const), seed: fc.integer({ min: 1, max: 1e9 }), breakAt: fc.double({ min: 0.2, max: 0.95, noNaN: true }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('snapshot' as const), shadow: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('delete' as const), pick: fc.nat({ max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('shadow' as const), pick: fc.nat({ max: 3 }) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('update' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('update' as const), cut: fc.integer({ min: 0, max: 6 }) }) },
);

/** Digests of the active disk and of every snapshot that reads as a consistent image (not a shadow with blocks reused). */
async function digests(file: string): Promise<Map<string, string>> {
  const vol = Volume.open(file, { write: false });
  try {
    const out = new Map<string, string>();
    for (const s of [undefined, ...vol.snapshots().filter((x) => !(x.shadow && x.reusedBlocks > 0)).map((x) => x.name)]) {
      const b = await exportToBuffer((sink) => exportImage(vol, s, sink));
      out.set(s ?? '@active', createHash('sha256').update(b).digest('hex'));
    }
    const rep = checkVolume(vol);
    expect([...rep.problems, ...rep.trees.flatMap((t) => t.problems.map((p) => `${t.name}: ${p}`))], `volume check of ${path.basename(file)}`).toEqual([]);
    return out;
  } finally {
    vol.close();
  }
}

async function digestOf(file: string, snapshot: string): Promise<string> {
  const vol = Volume.open(file, { write: false });
  try {
    return createHash('sha256').update(await exportToBuffer((sink) => exportImage(vol, snapshot, sink))).digest('hex');
  } finally {
    vol.close();
  }
}

function namesOf(file: string): Set<string> {
  const vol = Volume.open(file, { write: false });
  try {
    return new Set(vol.snapshots().map((x) => x.name));
  } finally {
    vol.close();
  }
}

function shadowsOf(file: string): Set<string> {
  const vol = Volume.open(file, { write: false });
  try {
    return new Set(vol.snapshots().filter((x) => x.shadow).map((x) => x.name));
  } finally {
    vol.close();
  }
}

/**
 * The active disk and every regular snapshot of the source are at the destination
 * exactly; a shadow snapshot is there exactly or not at all (the destination's allocator
 * may take its blocks, as the source's may: it is best effort by design).
 */
function expectReplica(src: Map<string, string>, dest: Map<string, string>, shadows: Set<string>, what: string): void {
  for (const [name, digest] of src) {
    if (name.startsWith('mirror.') || (shadows.has(name) && !dest.has(name))) continue;
    expect(dest.get(name), `${what}: ${name}`).toBe(digest);
  }
}

let counter = 0;
const seen = { updates: 0, cuts: 0, resumed: 0, staged: 0, shadowsReused: 0, failedWrites: 0 };

async function runSequence(ops: Op[]): Promise<void> {
  const run = path.join(dir, `run${counter++}`);
  fs.mkdirSync(run);
  const src = path.join(run, 'src.vol');
  const dest = path.join(run, 'dest.vol');
  const state = new MirrorState(path.join(run, 'state.json'));
  // room for about two and a half versions of the disk: deletes and shadows make the allocator reuse
  Volume.create(src, { size: BLOCKS * BS, blockSize: BS, maxSnapshots: 8, volumeSize: Math.floor(BLOCKS * 2.5) * BS });
  let n = 0;
  const sourceFull = (err: unknown): boolean => err instanceof ImgstreamError && err.code === 'volume-full' && err.message.startsWith(`${src}: `);
  /**
   * After a cut update the destination holds what it held (or is absent, before the first);
   * it may have let go early of snapshots the source no longer holds as consistent images
   * (deleted, or shadows with blocks reused) and of its older mirror snapshot.
   */
  const expectAsBefore = async (before: Map<string, string> | null): Promise<void> => {
    if (!before) {
      expect(fs.existsSync(dest), 'a cut first update leaves no destination').toBe(false);
      return;
    }
    const after = await digests(dest);
    const source = await digests(src);
    for (const [name, digest] of after) expect(digest, `a cut update changed ${name}`).toBe(before.get(name));
    const gone = [...before.keys()].filter((k) => !after.has(k));
    expect(gone.filter((k) => k === '@active' || (source.has(k) && !k.startsWith('mirror.'))), 'a cut update dropped snapshots the source still holds').toEqual([]);
  };
  const update = async (cut?: number): Promise<MirrorResult> => {
    const vol = Volume.open(src, { write: true, mirror: true });
    try {
      const d = localDestination(dest, undefined, { ackBytes: 16 << 10 });
      const ch = cut !== undefined ? cutAfter(d.channel, cut) : d.channel;
      try {
        const res = await sendMirror(vol, ch, { destination: dest, name: path.basename(dest), op: 'mirror.update', state });
        seen.staged += res.staged;
        return res;
      } finally {
        d.channel.close();
        await d.settled;
      }
    } finally {
      vol.close();
    }
  };
  try {
    for (const op of ops) {
      if (op.kind === 'write') {
        const vol = Volume.open(src, { write: true });
        try {
          const r = rng(op.seed);
          const buf = Buffer.alloc(BS);
          for (let k = 0; k < op.count; k++) {
            if (op.failAt !== undefined && k === op.failAt) throw new Error('writer gave up');
            if (r() < 0.1) buf.fill(0);
            else for (let i = 0; i < BS; i += 4) buf.writeUInt32LE((r() * 4294967296) >>> 0, i);
            vol.writeLogical(Math.floor(r() * BLOCKS), buf);
          }
          vol.commit();
        } catch (err) {
          if (!(err instanceof ImgstreamError && err.code === 'volume-full') && !/writer gave up/.test(String(err))) throw err;
          vol.abort(); // as a failed write leaves it: the last CP
          seen.failedWrites++;
        } finally {
          vol.close();
        }
      } else if (op.kind === 'import') {
        const img = randomImage(BLOCKS, BS, op.seed);
        const stop = Math.floor(img.length * op.breakAt);
        const pipe = { name: 'pipe', rereadable: false, async *open() {
          for (let o = 0; o < stop; o += 8 * BS) yield img.subarray(o, Math.min(stop, o + 8 * BS));
          throw new Error('source broke');
        } };
        const vol = Volume.open(src, { write: true });
        try {
          await expect(importImage(vol, pipe, undefined, { chunkBytes: 8 * BS })).rejects.toThrow(/source broke|volume is full/);
        } finally {
          vol.close();
        }
      } else if (op.kind === 'snapshot') {
        const vol = Volume.open(src, { write: true });
        try {
          if (vol.snapshots().filter((s) => !s.name.startsWith('mirror.')).length < 5) vol.createSnapshot(`s${n++}`, { shadow: op.shadow });
        } finally {
          vol.close();
        }
      } else if (op.kind === 'shadow') {
        const vol = Volume.open(src, { write: true });
        try {
          const regular = vol.snapshots().filter((s) => !s.name.startsWith('mirror.') && !s.shadow);
          if (regular.length > 0) vol.shadowSnapshot(regular[op.pick % regular.length].name);
        } finally {
          vol.close();
        }
      } else if (op.kind === 'delete') {
        const vol = Volume.open(src, { write: true });
        try {
          const users = vol.snapshots().filter((s) => !s.name.startsWith('mirror.'));
          if (users.length > 0) vol.deleteSnapshot(users[op.pick % users.length].name);
        } finally {
          vol.close();
        }
      } else {
        const before = fs.existsSync(dest) ? await digests(dest) : null;
        let res: MirrorResult | null = null;
        try {
          res = await update(op.cut);
        } catch (err) {
          if (op.cut !== undefined && /connection cut/.test(String(err))) {
            seen.cuts++;
            await expectAsBefore(before);
            continue;
          }
          // a source too full for the mirror's snapshot: refused, as a user sees it (the
          // destination has the source's size: it must never be too full for its state)
          if (sourceFull(err)) continue;
          throw err;
        }
        if (res.resumedTransfer) {
          // it finished the transfer a cut update began: the destination is the source as of
          // that transfer's snapshot; the next update brings it to now
          seen.resumed++;
          expect((await digests(dest)).get('@active'), 'a resumed transfer ends at its snapshot').toBe(await digestOf(src, res.top));
          try {
            await update();
          } catch (err) {
            if (sourceFull(err)) continue;
            throw err;
          }
        }
        seen.updates++;
        // every consistent snapshot of the source, and its active disk, are at the destination exactly
        expectReplica(await digests(src), await digests(dest), shadowsOf(src), 'after an update');
        // a snapshot on both is a shadow one on both or on neither (one made shadow since the last update included)
        const [srcShadows, destShadows] = [shadowsOf(src), shadowsOf(dest)];
        for (const name of namesOf(dest)) if (!name.startsWith('mirror.') && namesOf(src).has(name)) expect(destShadows.has(name), `after an update: ${name} shadow as on the source`).toBe(srcShadows.has(name));
        const srcVol = Volume.open(src, { write: false });
        const srcNames = new Set(srcVol.snapshots().map((x) => x.name));
        seen.shadowsReused += srcVol.snapshots().filter((x) => x.shadow && x.reusedBlocks > 0).length;
        srcVol.close();
        // and it holds no snapshot the source deleted
        const extra = [...(await digests(dest)).keys()].filter((k) => !srcNames.has(k) && k !== '@active' && !k.startsWith('mirror.'));
        expect(extra, 'snapshots the source deleted').toEqual([]);
      }
    }
  } finally {
    fs.rmSync(run, { recursive: true, force: true });
  }
}

describe('mirror updates across retention, shadows and failures, against the source', () => {
  it('every update leaves an exact replica, every cut one leaves the destination as it was', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(opArb, { minLength: 10, maxLength: 30 }), async (ops) => {
        // every run ends with an update cut at its first record (the random cuts may all fall
        // past the end of small transfers), then one that completes
        await runSequence([...ops, { kind: 'write', count: 20, seed: 7 }, { kind: 'update', cut: 0 }, { kind: 'update' }]);
      }),
      { numRuns: modelRuns(10), endOnFailure: true, ...(process.env.IMGSTREAM_MODEL_SEED ? { seed: Number(process.env.IMGSTREAM_MODEL_SEED), path: process.env.IMGSTREAM_MODEL_PATH } : {}) },
    );
    expect(seen.updates).toBeGreaterThan(modelRuns(10));
    expect(seen.cuts).toBeGreaterThan(0);
    if (process.env.IMGSTREAM_MODEL_SEEN) console.log(JSON.stringify(seen));
  }, 150_000);
  // Fixed sequences of what users do, each of which a destination once refused.
  const w = (seed: number, count = 40): Op => ({ kind: 'write', count, seed });
  const snap: Op = { kind: 'snapshot', shadow: false };
  const del: Op = { kind: 'delete', pick: 0 }; // the oldest user snapshot
  const up: Op = { kind: 'update' };
  const completed = async (ops: Op[]): Promise<void> => {
    const before = seen.updates;
    await runSequence(ops);
    expect(seen.updates - before, 'updates completed').toBe(ops.filter((o) => o.kind === 'update').length);
  };

  it('every user snapshot rotated between two updates: the leaving ones make room for the new ones', async () => {
    await completed([w(1), snap, w(2), snap, w(3), snap, w(4), snap, w(5), snap, up, del, del, del, del, del, w(6), snap, w(7), snap, w(8), snap, w(9), snap, w(10), snap, up]);
  }, 60_000);

  it('rotated snapshots that are the state the destination is at (no write between them) make room too', async () => {
    await completed([w(1), snap, snap, snap, snap, snap, up, del, del, del, del, del, w(6), snap, w(7), snap, w(8), snap, w(9), snap, w(10), snap, up]);
  }, 60_000);

  it('a deleted snapshot whose blocks the source reused for a new disk: the mirror has room for it', async () => {
    const staged = seen.staged;
    await completed([w(1, 400), snap, w(2, 400), up, del, w(3, 400), up]);
    expect(seen.staged).toBeGreaterThan(staged); // blocks landed on the deleted snapshot's VBNs
  }, 60_000);
});
