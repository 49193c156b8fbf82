// The 1 TiB volume shared by image-eval and cp-1tib: 4 KiB blocks, exactly 2^28 VBNs
// (1 TiB of block space, plus about 8 GiB of metadata: 258 planes of 32 MiB), a sparse
// file. Snapshots s1, s2, s3 are taken through the library right after creation, so
// their table entries and slots are the engine's own; their planes, empty at that point,
// are then overwritten in the file with synthetic words (see synthetic-planes.ts) while
// no process has the volume open.
import fs from 'node:fs';
import path from 'node:path';
import { Volume, VolumeLayout, withVolume } from '../../src/volume/index.js';
import type { BenchContext } from './context.js';
import { expectedImage, syntheticPlanes } from './synthetic-planes.js';

export const BIG_LOGICAL_BYTES = 2 ** 40;
export const BIG_VBNS = 2 ** 28;
export const SNAPSHOTS = ['s1', 's2', 's3'] as const;

export interface BigVolume {
  path: string;
  layout: VolumeLayout;
  /** Byte range of each snapshot's plane in the volume file. */
  planes: Record<(typeof SNAPSHOTS)[number], { offset: number; bytes: number }>;
  /** What `s3 + s2 - s1` must evaluate to. */
  expected: { blocks: number; extents: number };
}

export function bigVolume(ctx: BenchContext): Promise<BigVolume> {
  return ctx.once('big-volume', async () => build(ctx));
}

async function build(ctx: BenchContext): Promise<BigVolume> {
  const file = path.join(ctx.work, 'big.vol');
  const bs = 4096;
  // --size 1T, and a volume size that leaves exactly 2^28 VBNs after the metadata
  const wanted = new VolumeLayout(bs, BIG_VBNS, 255);
  ctx.log(`creating a ${wanted.fileBytes} byte sparse volume (1 TiB logical disk, ${BIG_VBNS} VBNs) and snapshots s1, s2, s3`);
  const root = Volume.create(file, { size: BIG_LOGICAL_BYTES, volumeSize: wanted.fileBytes, blockSize: bs });
  if (root.nblocks !== BIG_VBNS) throw new Error(`volume has ${root.nblocks} VBNs, expected ${BIG_VBNS}`);
  const layout = new VolumeLayout(root.blockSize, root.nblocks, root.maxSnapshots);
  const slots = await withVolume(file, true, (vol) => SNAPSHOTS.map((name) => vol.createSnapshot(name).slot));

  const words = layout.planeBlocks * layout.wordsPerPlaneBlock;
  const synth = syntheticPlanes(words, layout.nblocks, 20260523);
  const planes = {} as BigVolume['planes'];
  const fd = fs.openSync(file, 'r+');
  try {
    SNAPSHOTS.forEach((name, k) => {
      const offset = layout.metaOffset(layout.planeBlock(layout.snapshotPlane(slots[k]), 0));
      const data = synth[name];
      const bytes = layout.planeBlocks * bs;
      if (data.byteLength !== bytes) throw new Error(`plane of ${data.byteLength} bytes, expected ${bytes}`);
      fs.writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), 0, bytes, offset);
      planes[name] = { offset, bytes };
    });
    fs.fdatasyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  const expected = expectedImage(synth);
  ctx.note(
    `image-eval, cp-1tib: the 1 TiB volume's snapshot planes are SYNTHETIC: s1, s2, s3 were taken through the library on the empty ` +
      `volume, then their ${(layout.planeBlocks * bs) / 2 ** 20} MiB planes were overwritten in the file with generated words ` +
      `(runs of empty/full/mixed words, density ${synth.density.map((d) => d.toFixed(3)).join('/')}; s2 = s1 with 5% of words ` +
      `changed, s3 = s2 with 5% changed). Writing 1 TiB of blocks is impossible here, and an image evaluation reads only plane ` +
      `bytes, never data. Expected image s3 + s2 - s1: ${expected.blocks} blocks, ${expected.extents} extents.`,
  );
  return { path: file, layout, planes, expected };
}
