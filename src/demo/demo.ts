// The built-in demo: the main job end to end on a volume it makes itself. Create a
// volume, import a disk image, snapshot, change it, snapshot again (twice), show storage
// images, export every snapshot and verify it byte for byte, check the volume.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { CorruptError } from '../errors.js';
import { noProgress, type Progress } from '../progress.js';
import { checkVolume, exportImage, fileSink, fileSource, importImage, storageImageOf, Volume, withVolume } from '../volume/index.js';

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

export async function runDemo(dir: string, opts: { size: number; blockSize: number }, progress: Progress = noProgress): Promise<DemoResult> {
  fs.mkdirSync(dir, { recursive: true });
  const volume = path.join(dir, 'demo.vol');
  const steps: DemoStep[] = [];
  const note = (step: string, detail: string) => steps.push({ step, detail });
  const bs = opts.blockSize;
  const blocks = opts.size / bs;

  const root = Volume.create(volume, { size: opts.size, blockSize: bs, maxSnapshots: 16 });
  note('create', `${volume}: ${blocks} logical blocks of ${bs} bytes, ${root.nblocks} volume blocks`);

  const days = ['monday', 'tuesday', 'wednesday'];
  const img = makeImage(blocks, bs, 2026);
  const saved = new Map<string, string>();
  for (let d = 0; d < days.length; d++) {
    if (d > 0) note('change', `${change(img, bs, d === 1 ? 0.05 : 0.02, d)} blocks of the disk rewritten`);
    const file = path.join(dir, `${days[d]}.raw`);
    fs.writeFileSync(file, img);
    const r = await withVolume(volume, true, async (vol) => {
      const res = await importImage(vol, fileSource(file), progress);
      vol.createSnapshot(days[d]);
      return res;
    });
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
    const out = path.join(dir, `${day}.exported.raw`);
    await withVolume(volume, false, async (vol) => {
      const sink = fileSink(out, { force: true, size: vol.rootRecord.logicalSize });
      await exportImage(vol, day, sink, progress);
      await sink.finish();
    });
    const digest = sha(fs.readFileSync(out));
    verified.push({ snapshot: day, sha256: digest, identical: digest === saved.get(day) });
  }
  note('verify', verified.map((v) => `${v.snapshot} ${v.identical ? 'identical' : 'DIFFERS'}`).join(', '));

  const report = await withVolume(volume, false, (vol) => checkVolume(vol));
  note('check', report.ok ? 'volume is consistent' : 'volume check found problems');
  const ok = report.ok && verified.every((v) => v.identical);
  if (!ok) throw new CorruptError(`demo failed: ${steps[steps.length - 1].detail}`, `inspect ${dir}`);
  return { dir, volume, steps, images, verified, ok };
}
