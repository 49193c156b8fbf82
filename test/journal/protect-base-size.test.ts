// How large a protection destination's base grows as retention folds rewrites into it
// (README "The base's size"): without snapshots, not at all (blocks a fold frees are used
// again); with source snapshots of new names, by the old versions they pin, up to the
// base volume's size and no further (its oldest snapshots deleted as new ones come),
// the newest recovery point exact throughout.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalProtectDestination } from '../../src/journal/destination.js';
import type { IntervalBlock } from '../../src/journal/destination-api.js';
import { protectDestFixture } from '../support/protect-dest.js';

const fx = protectDestFixture('imgstream-base-size-');
const BS = 4096;
const BLOCKS = 1024; // a 4 MiB disk
const PER = 64; // blocks rewritten per interval
const T0 = Date.UTC(2026, 11, 3);
const allocated = (dest: string) => fs.statSync(path.join(dest, 'base.vol')).blocks * 512;

function block(lbn: number, seq: number): Buffer {
  const b = Buffer.alloc(BS, (lbn * 7 + seq) & 0xff);
  b.writeUInt32LE(lbn, 0);
  b.writeUInt32LE(seq, 4);
  return b;
}

async function* iterate(blocks: IntervalBlock[]): AsyncGenerator<IntervalBlock> {
  for (const b of blocks) yield b;
}

/** Seeds a full disk, then appends `count` intervals of PER rewritten blocks each, every one folded at the next; `snapshot(seq)` names what each carries. Returns the base's allocation after each, and the disk at the end. */
async function run(dest: string, count: number, snapshot: (seq: number) => string | null): Promise<{ sizes: number[]; disk: Buffer }> {
  const disk = Buffer.alloc(BS * BLOCKS);
  const d = new LocalProtectDestination(dest);
  await d.open({ uuid: 'ba5e'.repeat(8), path: 'b.vol', blockSize: BS, logicalSize: BS * BLOCKS }, 1);
  const seedBlocks = Array.from({ length: BLOCKS }, (_, lbn) => ({ lbn, data: block(lbn, 0) }));
  for (const b of seedBlocks) b.data.copy(disk, b.lbn * BS);
  await d.seed({ journalTo: 0, time: T0, blockCount: BLOCKS, blocks: iterate(seedBlocks) });
  const sizes: number[] = [];
  for (let seq = 1; seq <= count; seq++) {
    const first = (seq * 389) % (BLOCKS - PER);
    const blocks = Array.from({ length: PER }, (_, i) => ({ lbn: first + i, data: block(first + i, seq) }));
    for (const b of blocks) b.data.copy(disk, b.lbn * BS);
    const name = snapshot(seq);
    await d.append({ seq, start: T0 + (seq - 1) * 1000, end: T0 + seq * 1000, journalFrom: seq - 1, journalTo: seq, kind: 'journal', snapshots: name ? [name] : [], blockCount: PER, blocks: iterate(blocks) });
    sizes.push(allocated(dest));
  }
  await d.close();
  return { sizes, disk };
}

describe('the base of a protection destination', () => {
  it('does not grow as rewrites are folded into it, without snapshots', async () => {
    const dest = fx.at('plain.cdp');
    const { sizes, disk } = await run(dest, 120, () => null);
    // 120 intervals of 256 KiB: 7.5 times the disk rewritten, the base as large after 20 as after 120
    expect(sizes.at(-1)).toBe(sizes[19]);
    expect(sizes.at(-1)!).toBeLessThan(BS * BLOCKS * 1.25);
    expect(fx.exportAsOf(dest, new Date(T0 + 120_000).toISOString()).equals(disk)).toBe(true);
  });

  it('grows by what its snapshots pin, up to the base volume\'s size, and no further', async () => {
    const dest = fx.at('snapshots.cdp');
    const { sizes, disk } = await run(dest, 160, (seq) => `s${seq}`);
    const cap = fs.statSync(path.join(dest, 'base.vol')).size;
    // the base volume's size (sparse): 4 blocks per block of the disk and 4096, and its metadata
    expect(cap).toBeGreaterThanOrEqual((BLOCKS * 4 + 4096) * BS);
    expect(cap).toBeLessThan((BLOCKS * 4 + 4096) * BS * 1.05);
    expect(sizes[40]).toBeGreaterThan(sizes[10]); // the old versions each snapshot pins
    expect(Math.max(...sizes)).toBeLessThanOrEqual(cap);
    expect(sizes.at(-1)).toBe(sizes.at(-30)); // at the cap: no further
    const kept = fx.cli(['snapshot', 'list', path.join(dest, 'base.vol'), '--json']);
    const names = (JSON.parse(kept.stdout) as { snapshots: Array<{ name: string }> }).snapshots.map((x) => x.name);
    expect(names.length).toBeLessThan(159);
    expect(names).toContain('s159'); // the newest folded ones stay, the oldest went
    expect(names).not.toContain('s1');
    expect(fx.exportAsOf(dest, new Date(T0 + 160_000).toISOString()).equals(disk)).toBe(true);
  });
});
