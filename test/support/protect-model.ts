// A deterministic source of protection intervals and the disk image each recovery point
// must rebuild: the seed image and interval N's blocks depend only on (seed, N), so a
// driver process that is killed and restarted ships exactly what the test's model holds.
import type { IntervalBlock, ProtectedSource, SeedImage, ShippedInterval } from '../../src/journal/destination-api.js';

export const MODEL_BLOCK_SIZE = 4096;
export const MODEL_BLOCKS = 64;
/** The seed's time; interval N ends at T0 + N seconds + up to 999 ms. */
export const MODEL_T0 = Date.UTC(2026, 11, 3, 10, 0, 0);

function prng(a: number): () => number {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function blockData(seed: number, seq: number, lbn: number): Buffer {
  const r = prng(seed * 1_000_003 + seq * 7919 + lbn * 104_729);
  const b = Buffer.alloc(MODEL_BLOCK_SIZE);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE(Math.floor(r() * 4294967296), i);
  return b;
}

export function modelSource(seed: number): ProtectedSource {
  return { uuid: `${seed.toString(16).padStart(8, '0')}${'c'.repeat(24)}`, path: 'model.vol', blockSize: MODEL_BLOCK_SIZE, logicalSize: MODEL_BLOCK_SIZE * MODEL_BLOCKS };
}

export function endOf(seed: number, seq: number): number {
  if (seq === 0) return MODEL_T0;
  return MODEL_T0 + seq * 1000 + Math.floor(prng(seed * 31 + seq)() * 999);
}

export function seedBlocks(seed: number): IntervalBlock[] {
  const r = prng(seed);
  const out: IntervalBlock[] = [];
  for (let lbn = 0; lbn < MODEL_BLOCKS; lbn++) if (r() < 0.5) out.push({ lbn, data: blockData(seed, 0, lbn) });
  return out;
}

export interface ModelOptions {
  /** Every how many intervals one carries a snapshot (0: none). */
  snapshotEvery?: number;
  /** Names rotate among this many (rot0, rot1, …), as a source that keeps the last few hourly snapshots: a name is taken again. */
  rotate?: number;
}

/** The snapshot interval `seq` carries, or null. */
export function snapshotOf(seq: number, opts: ModelOptions = {}): string | null {
  const every = opts.snapshotEvery ?? 0;
  if (!every || seq % every !== 0) return null;
  return opts.rotate ? `rot${(seq / every) % opts.rotate}` : `snap${seq}`;
}

export function intervalBlocks(seed: number, seq: number): IntervalBlock[] {
  const r = prng(seed * 17 + seq * 65_537);
  const n = 1 + Math.floor(r() * 12);
  const lbns = new Set<number>();
  // a hot set of 8 blocks takes most writes
  while (lbns.size < n) lbns.add(r() < 0.6 ? Math.floor(r() * 8) : Math.floor(r() * MODEL_BLOCKS));
  return [...lbns].sort((a, b) => a - b).map((lbn) => ({ lbn, data: r() < 0.2 ? null : blockData(seed, seq, lbn) }));
}

async function* iterate(blocks: IntervalBlock[]): AsyncGenerator<IntervalBlock> {
  for (const b of blocks) yield b;
}

export function seedImage(seed: number): SeedImage {
  const blocks = seedBlocks(seed);
  return { journalTo: 0, time: MODEL_T0, blockCount: blocks.length, blocks: iterate(blocks) };
}

export function shippedInterval(seed: number, seq: number, opts: ModelOptions = {}): ShippedInterval {
  const blocks = intervalBlocks(seed, seq);
  const snap = snapshotOf(seq, opts);
  return {
    seq,
    start: endOf(seed, seq - 1),
    end: endOf(seed, seq),
    journalFrom: (seq - 1) * 10,
    journalTo: seq * 10,
    kind: 'journal',
    snapshots: snap ? [snap] : [],
    blockCount: blocks.length,
    blocks: iterate(blocks),
  };
}

/** The raw disk image at each recovery point 0..count (index = interval seq). */
export function modelImages(seed: number, count: number): Buffer[] {
  const img = Buffer.alloc(MODEL_BLOCK_SIZE * MODEL_BLOCKS);
  const put = (b: IntervalBlock) => {
    const at = b.lbn * MODEL_BLOCK_SIZE;
    if (b.data) b.data.copy(img, at);
    else img.fill(0, at, at + MODEL_BLOCK_SIZE);
  };
  seedBlocks(seed).forEach(put);
  const out = [Buffer.from(img)];
  for (let seq = 1; seq <= count; seq++) {
    intervalBlocks(seed, seq).forEach(put);
    out.push(Buffer.from(img));
  }
  return out;
}

/** The recovery point a time names: the last interval end ≤ t. */
export function pointAt(seed: number, count: number, t: number): number {
  let p = 0;
  for (let seq = 1; seq <= count; seq++) if (endOf(seed, seq) <= t) p = seq;
  return p;
}
