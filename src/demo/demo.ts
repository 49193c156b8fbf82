// The built-in demo: the main jobs end to end on a volume it makes itself. Create a
// volume, import a disk image, snapshot, change it, snapshot again (twice), show storage
// images, export every snapshot and verify it byte for byte, check the volume; then dump
// levels 0, 1 and 2, verify the chain, restore it into a new volume and compare every
// snapshot byte for byte, mirror the volume to a second one, change it, update the mirror
// and compare again (jobs.ts). Anything that differs fails the demo.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError, ExistsError, InvalidInputError, fromSystemError } from '../core/errors.js';
import { noProgress, type Progress } from '../core/progress.js';
import { checkVolume, exportImage, fileSink, fileSource, importImage, storageImageOf, Volume, withVolume } from '../volume/index.js';
import { formatSize } from '../core/size.js';
import * as jobs from './jobs.js';
import type { DemoDump } from './jobs.js';
import { makeDirectories } from '../core/make-dirs.js';

export interface DemoStep {
  step: string;
  detail: string;
}

export interface DemoResult {
  dir: string;
  volume: string;
  steps: DemoStep[];
  images: Array<{ expression: string; blocks: number; bytes: number; extents: number }>;
  verified: Array<{ snapshot: string; sha256: string; identical: boolean }>;
  dumps: DemoDump[];
  /** The restored volume's snapshots (and the mirror's active file system, "mirror"), compared with the images. */
  restored: Array<{ snapshot: string; identical: boolean }>;
  mirror: Array<{ mode: string; top: string; blocks: number; bytes: number; identical: boolean }>;
  ok: boolean;
}

/** Deterministic disk content: random blocks with a quarter of them zero (thin). */
function makeImage(blocks: number, bs: number, seed: number): Buffer {
  let s = seed >>> 0 || 1;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>>= 0);
  };
  const img = Buffer.alloc(blocks * bs);
  for (let i = 0; i < blocks; i++) {
    if (next() % 4 === 0) continue;
    for (let o = i * bs; o < (i + 1) * bs; o += 4) img.writeUInt32LE(next(), o);
  }
  return img;
}

function change(img: Buffer, bs: number, fraction: number, seed: number): number {
  const blocks = img.length / bs;
  const n = Math.max(1, Math.round(blocks * fraction));
  let s = seed;
  for (let k = 0; k < n; k++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const i = s % blocks;
    img.writeUInt32LE(s, i * bs + 16);
    img.writeUInt32LE(k, i * bs + 20);
  }
  return n;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** SHA-256 of a snapshot (or the active file system) of `volume`, exported to `out`. */
async function exportSha(volume: string, snapshot: string | undefined, out: string, progress: Progress): Promise<string> {
  await withVolume(volume, false, async (vol) => {
    const sink = fileSink(out, { force: false, size: vol.rootRecord.logicalSize });
    await exportImage(vol, snapshot, sink, progress);
    await sink.finish();
  });
  const digest = sha(fs.readFileSync(out));
  fs.rmSync(out);
  return digest;
}

/** Writes a disk image the demo makes (and removes again): never over a file it did not make. */
function writeNew(file: string, img: Buffer): void {
  try {
    fs.writeFileSync(file, img, { flag: 'wx' });
  } catch (err) {
    throw fromSystemError(err, file, 'writing the demo disk image');
  }
}

async function importInto(volume: string, file: string, snapshot: string | null, progress: Progress) {
  return withVolume(volume, true, async (vol) => {
    const res = await importImage(vol, fileSource(file), progress);
    if (snapshot) vol.createSnapshot(snapshot);
    return res;
  });
}

const DAYS = ['monday', 'tuesday', 'wednesday'];

/** Every file the demo makes in its directory, the ones it removes again (images, exports) too. */
export function demoFileNames(): string[] {
  const perDay = DAYS.flatMap((d, level) => [`${d}.raw`, `${d}.exported.raw`, `${d}.restored.raw`, `${d}.l${level}`]);
  return ['demo.vol', 'catalog.json', 'restored.vol', 'mirror.vol', 'mirror-state.json', 'thursday.raw', 'mirror.exported.raw', ...perDay];
}

/**
 * Refuses a directory holding any file of the demo's (a link, even a dangling one, too):
 * the demo writes over its files and removes some, so a user's monday.raw would be lost.
 */
function refuseExisting(dir: string): void {
  for (const name of demoFileNames()) {
    const file = path.join(dir, name);
    let there = true;
    try {
      fs.lstatSync(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, file, 'looking into the demo directory');
      there = false;
    }
    if (there) throw new ExistsError(`${file}: already exists (the demo makes a file of that name)`, 'choose another --dir or remove it');
  }
}

export async function runDemo(dir: string, opts: { size: number; blockSize: number }, progress: Progress = noProgress): Promise<DemoResult> {
  // (an empty path would be the current directory)
  if (dir === '') throw new InvalidInputError('the demo directory is an empty path', 'give --dir a directory, or leave it out for a temporary one');
  try {
    makeDirectories(dir);
  } catch (err) {
    // the ancestor that is a file, when one is
    throw fromSystemError(err, (err as NodeJS.ErrnoException).path ?? dir, 'creating the demo directory');
  }
  refuseExisting(dir);
  const volume = path.join(dir, 'demo.vol');
  const steps: DemoStep[] = [];
  const note = (step: string, detail: string) => steps.push({ step, detail });
  const bs = opts.blockSize;
  const blocks = opts.size / bs;

  const root = Volume.create(volume, { size: opts.size, blockSize: bs, maxSnapshots: 16 });
  note('create', `${volume}: ${blocks} logical blocks of ${bs} bytes, ${root.nblocks} volume blocks`);

  const days = DAYS;
  const img = makeImage(blocks, bs, 2026);
  const saved = new Map<string, string>();
  for (let d = 0; d < days.length; d++) {
    if (d > 0) note('change', `${change(img, bs, d === 1 ? 0.05 : 0.02, d)} blocks of the disk rewritten`);
    const file = path.join(dir, `${days[d]}.raw`);
    writeNew(file, img);
    const r = await importInto(volume, file, days[d], progress);
    fs.rmSync(file);
    saved.set(days[d], sha(img));
    note('import', `${file}: ${r.changedBlocks} blocks written, ${r.unchangedBlocks} unchanged; snapshot ${days[d]} taken`);
  }

  const expressions = ['monday', 'tuesday - monday', 'wednesday + tuesday - monday', 'wednesday - tuesday', 'monday & wednesday'];
  const images = await withVolume(volume, false, (vol) =>
    expressions.map((e) => {
      const s = storageImageOf(vol, e);
      return { expression: s.expression, blocks: s.blocks, bytes: s.bytes, extents: s.extents };
    }),
  );

  const verified: DemoResult['verified'] = [];
  for (const day of days) {
    const digest = await exportSha(volume, day, path.join(dir, `${day}.exported.raw`), progress);
    verified.push({ snapshot: day, sha256: digest, identical: digest === saved.get(day) });
  }
  note('export', verified.map((v) => `${v.snapshot} ${v.identical ? 'identical' : 'DIFFERS'}`).join(', '));
  const fail = (what: string): never => {
    throw new CorruptError(`demo failed: ${what}`, `inspect ${dir}`);
  };
  if (!verified.every((v) => v.identical)) fail(steps.at(-1)!.detail);

  const report = await withVolume(volume, false, (vol) => checkVolume(vol));
  note('check', report.ok ? 'volume is consistent' : 'volume check found problems');
  if (!report.ok) fail(`volume check of ${volume} found problems`);

  // backups: levels 0, 1, 2, verified as a chain, restored into a new volume
  const dumps = await jobs.demoDumps(dir, volume, days, progress);
  for (const d of dumps) note('dump', `level ${d.level} (${d.expression}): ${d.blocks} blocks, ${formatSize(d.streamBytes)} stream -> ${d.file}`);
  const v = await jobs.demoVerify(dumps.map((d) => d.file), progress);
  note('verify', `${v.streams.length} streams: every checksum, the SHA-256 of each, the chain`);
  const restoredVol = path.join(dir, 'restored.vol');
  const r = await jobs.demoRestore(dumps.map((d) => d.file), restoredVol, progress);
  const restored: DemoResult['restored'] = [];
  for (const day of days) restored.push({ snapshot: day, identical: (await exportSha(restoredVol, day, path.join(dir, `${day}.restored.raw`), progress)) === saved.get(day) });
  note('restore', `${r.streams.length} streams -> ${restoredVol}: ${restored.map((x) => `${x.snapshot} ${x.identical ? 'identical' : 'DIFFERS'}`).join(', ')}`);
  if (!restored.every((x) => x.identical)) fail(steps.at(-1)!.detail);

  // a mirror on a second volume: the full transfer, a change, an incremental update
  const mirrorVol = path.join(dir, 'mirror.vol');
  const mirror: DemoResult['mirror'] = [];
  for (let round = 0; round < 2; round++) {
    if (round === 1) {
      const n = change(img, bs, 0.01, 7);
      const file = path.join(dir, 'thursday.raw');
      writeNew(file, img);
      await importInto(volume, file, null, progress);
      fs.rmSync(file);
      note('change', `${n} blocks of the disk rewritten`);
    }
    const m = await jobs.demoMirror(dir, volume, mirrorVol, progress);
    const identical = (await exportSha(mirrorVol, undefined, path.join(dir, 'mirror.exported.raw'), progress)) === sha(img);
    mirror.push({ mode: m.mode, top: m.top, blocks: m.blocks, bytes: m.bytes, identical });
    note('mirror', `${m.mode} transfer -> ${mirrorVol} at ${m.top}: ${m.blocks} blocks, ${formatSize(m.bytes)} sent; its disk ${identical ? 'identical' : 'DIFFERS'}`);
    if (!identical) fail(steps.at(-1)!.detail);
  }
  const mirrorReport = await withVolume(mirrorVol, false, (vol) => checkVolume(vol));
  if (!mirrorReport.ok) fail(`volume check of ${mirrorVol} found problems`);
  note('check', `${mirrorVol} is consistent`);

  return { dir, volume, steps, images, verified, dumps, restored, mirror, ok: true };
}
