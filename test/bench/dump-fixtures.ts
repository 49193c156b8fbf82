// What the dump and restore benchmarks share, built once on first use:
//   - a 4 GiB volume (4 KiB blocks) holding a half-compressible image with ~10% zero
//     blocks (half-image.ts), imported through the CLI from a pipe, snapshot "base";
//   - the image's non-zero blocks as one file: the bytes a level-0 dump sends, the input
//     of the cat, dd and zstd baselines;
//   - a level-0 stream of "base" (--compress none), recorded in the run's catalog;
//   - the same volume after 1% of its blocks changed (the image re-imported with those
//     blocks given new contents), snapshot "changed", and a level-1 stream of it;
//   - when rsync is installed, a copy of the volume file from before the change.
// Every dump goes to the run's own catalog, never the user's.
import fs from 'node:fs';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { settle, type Input } from './cache-state.js';
import { cliCommand, cliJson, parseJsonOutput } from './cli.js';
import type { BenchContext } from './context.js';
import { run } from './measure.js';
import { HALF_BLOCK, HalfImage } from './half-image.js';
import { rsyncInstalled } from './rsync-daemon.js';
import { volumeData } from './volume-input.js';

export const VOLUME_BYTES = 4 * 2 ** 30;
export const ZERO_BLOCKS = 0.1;
export const CHANGED_BLOCKS = 0.01;
export const BASE = 'base';
export const CHANGED = 'changed';

export interface SnapshotJson {
  name: string;
  /** VBNs the snapshot holds: data blocks and map blocks. */
  blocks: number;
  mappedBlocks: number;
}

export interface DumpJson {
  level: number;
  expression: string;
  blocks: number;
  bytes: number;
  streamBytes: number;
  sha256: string;
}

export interface TestVolume {
  path: string;
  catalog: string;
  image: HalfImage;
  dataBlocks: number;
  base: SnapshotJson;
  /** VBNs of the volume, and the bytes of one plane (one bit per VBN). */
  nblocks: number;
  planeBytes: number;
}

export interface ChangedVolume {
  vol: TestVolume;
  image: HalfImage;
  changed: SnapshotJson;
  /** Copy of the volume file from before the change (for rsync), or null. */
  before: string | null;
}

export interface Stream {
  path: string;
  result: DumpJson;
}

/** Creates a volume of `bytes`, imports a half-compressible image of that size through a pipe, takes snapshot "base". */
export async function buildVolume(ctx: BenchContext, name: string, bytes: number, seed: number): Promise<TestVolume> {
  const file = path.join(ctx.work, name);
  const catalog = path.join(ctx.work, 'catalog.json');
  const image = new HalfImage(bytes / HALF_BLOCK, seed, ZERO_BLOCKS);
  const dataBlocks = image.dataBlocks();
  ctx.log(`creating a ${bytes / 2 ** 30} GiB volume ${name} and importing a half-compressible image (${ZERO_BLOCKS * 100}% zero blocks) from a pipe`);
  const created = cliJson<{ nblocks: number }>(['volume', 'create', file, '--size', String(bytes)]);
  const imported = await importPiped(file, image);
  if (imported.changedBlocks !== dataBlocks || imported.bytes !== bytes) {
    throw new Error(`import wrote ${imported.changedBlocks} blocks of ${imported.bytes} bytes, expected ${dataBlocks} blocks of ${bytes}`);
  }
  const base = cliJson<SnapshotJson>(['snapshot', 'create', file, BASE]);
  if (base.mappedBlocks !== dataBlocks) throw new Error(`snapshot ${BASE} maps ${base.mappedBlocks} blocks, expected ${dataBlocks}`);
  return { path: file, catalog, image, dataBlocks, base, nblocks: created.nblocks, planeBytes: created.nblocks / 8 };
}

/** The 4 GiB volume at snapshot "base". */
export function volume4(ctx: BenchContext): Promise<TestVolume> {
  return ctx.once('dump-volume', () => buildVolume(ctx, 'dump.vol', VOLUME_BYTES, 4242));
}

/** The non-zero blocks of the 4 GiB volume's image, in order, as one file. */
export function packedData(ctx: BenchContext): Promise<{ path: string; bytes: number }> {
  return ctx.once('dump-packed', async () => {
    const vol = await volume4(ctx);
    const file = path.join(ctx.work, 'image-data.raw');
    ctx.log('writing the image\'s non-zero blocks to a file (the baselines\' input)');
    const bytes = vol.image.writePacked(file);
    if (bytes !== vol.dataBlocks * HALF_BLOCK) throw new Error(`packed image of ${bytes} bytes, expected ${vol.dataBlocks * HALF_BLOCK}`);
    return { path: file, bytes };
  });
}

/** The non-zero blocks of any test volume's image as one file (not cached). */
export async function packedDataOf(ctx: BenchContext, vol: TestVolume, name: string): Promise<{ path: string; bytes: number }> {
  const file = path.join(ctx.work, name);
  ctx.log(`writing the image's non-zero blocks of ${path.basename(vol.path)} to a file (the baseline's input)`);
  const bytes = vol.image.writePacked(file);
  if (bytes !== vol.dataBlocks * HALF_BLOCK) throw new Error(`packed image of ${bytes} bytes, expected ${vol.dataBlocks * HALF_BLOCK}`);
  return { path: file, bytes };
}

export function releasePackedData(ctx: BenchContext): void {
  fs.rmSync(path.join(ctx.work, 'image-data.raw'), { force: true });
  ctx.forget('dump-packed');
}

/** `imgstream dump` of `snapshot` at `level` to `to`, recorded in the run's catalog. */
export function dumpArgs(vol: TestVolume, level: number, snapshot: string, to: string, extra: string[] = []): string[] {
  return ['dump', vol.path, '--level', String(level), '--snapshot', snapshot, '--to', to, '--catalog', vol.catalog, ...extra, '--json'];
}

/** A level-0 stream of "base" with --compress none. dump-none hands over one of its outputs; made here otherwise. */
export function l0Stream(ctx: BenchContext, given?: Stream): Promise<Stream> {
  return ctx.once('dump-l0-none', async () => {
    if (given) return given;
    const vol = await volume4(ctx);
    const file = path.join(ctx.work, 'base.l0');
    ctx.log('dumping level 0 of the 4 GiB volume (--compress none) for the level-1 and restore benchmarks');
    return { path: file, result: cliJson<DumpJson>(dumpArgs(vol, 0, BASE, file, ['--compress', 'none'])) };
  });
}

/** The 4 GiB volume after 1% of its image's blocks changed, snapshot "changed" (a level-0 dump is in the catalog first). */
export function changedVolume4(ctx: BenchContext): Promise<ChangedVolume> {
  return ctx.once('dump-volume-changed', async () => {
    const vol = await volume4(ctx);
    await l0Stream(ctx);
    let before: string | null = null;
    if (rsyncInstalled()) {
      before = path.join(ctx.work, 'dump.vol.before');
      run('cp', ['--sparse=always', vol.path, before]);
    }
    const image = await changeVolume(ctx, vol, Math.round(vol.image.blocks * CHANGED_BLOCKS), 4343);
    const changed = cliJson<SnapshotJson>(['snapshot', 'create', vol.path, CHANGED]);
    return { vol, image, changed, before };
  });
}

/** Re-imports the volume's image with `count` blocks given new contents. */
export async function changeVolume(ctx: BenchContext, vol: TestVolume, count: number, seed: number): Promise<HalfImage> {
  const image = vol.image.withChanges(count, seed);
  ctx.log(`re-importing ${path.basename(vol.path)}'s image with ${count} blocks changed`);
  const r = await importPiped(vol.path, image);
  if (r.changedBlocks !== count || r.unmappedBlocks !== 0) throw new Error(`re-import wrote ${r.changedBlocks} and unmapped ${r.unmappedBlocks} blocks, expected ${count} and 0`);
  return image;
}

/** A level-1 stream of "changed" with --compress none. dump-l1 hands over its own; made here otherwise. */
export function l1Stream(ctx: BenchContext, given?: Stream): Promise<Stream> {
  return ctx.once('dump-l1-none', async () => {
    if (given) return given;
    const { vol } = await changedVolume4(ctx);
    const file = path.join(ctx.work, 'changed.l1');
    return { path: file, result: cliJson<DumpJson>(dumpArgs(vol, 1, CHANGED, file, ['--compress', 'none'])) };
  });
}

/** `imgstream volume import VOL --from -` with the image written into its stdin. */
export async function importPiped(vol: string, image: HalfImage): Promise<{ bytes: number; changedBlocks: number; unmappedBlocks: number }> {
  const [node, args] = cliCommand(['volume', 'import', vol, '--from', '-', '--json']);
  const child = spawn(node, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  try {
    await image.pipeTo(child.stdin);
  } catch (err) {
    child.kill();
    await exited;
    throw new Error(`volume import --from - stopped reading: ${stderr.trim() || String(err)}`);
  }
  const code = await exited;
  if (code !== 0) throw new Error(`volume import --from - exited with ${code}: ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  return parseJsonOutput(stdout);
}

/** settle() for a measurement that reads these files (volumes: only their used part). */
export async function settleFor(ctx: BenchContext, volumes: string[], files: string[]): Promise<void> {
  const inputs: Input[] = [];
  for (const v of volumes) inputs.push(await volumeData(v));
  for (const f of files) inputs.push({ path: f });
  settle(ctx.cache, inputs);
}
