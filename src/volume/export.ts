// Export: the active file system or a snapshot as a raw image of the logical disk size.
// Reads only mapped blocks (in runs of consecutive VBNs); unmapped blocks are zeros, and a
// sink that can seek (a regular file) skips them, leaving the output sparse.
import { CorruptError, InvalidInputError } from '../core/errors.js';
import { noProgress, type Progress } from '../core/progress.js';
import type { Volume } from './volume.js';

export interface ImageSink {
  write(data: Buffer): Promise<void> | void;
  /** Leaves `bytes` of zeros as a hole; absent for sinks that cannot seek. */
  skip?(bytes: number): void;
}

export interface ExportResult {
  snapshot: string | null;
  bytes: number;
  blocks: number;
  mappedBlocks: number;
}

const CHUNK_BYTES = 8 << 20;

export async function exportImage(vol: Volume, snapshot: string | undefined, sink: ImageSink, progress: Progress = noProgress): Promise<ExportResult> {
  if (snapshot !== undefined) {
    const s = vol.snapshot(snapshot);
    if (s.shadow && s.reusedBlocks > 0) {
      throw new InvalidInputError(`${vol.path}: shadow snapshot "${snapshot}" had ${s.reusedBlocks} blocks reused and no longer holds a consistent image`, 'export a regular snapshot instead');
    }
  }
  const map = vol.mapOf(snapshot);
  const bs = vol.blockSize;
  const total = vol.logicalBlocks;
  const per = Math.max(1, Math.floor(CHUNK_BYTES / bs));
  const result: ExportResult = { snapshot: snapshot ?? null, bytes: 0, blocks: total, mappedBlocks: 0 };
  progress.start('exporting', total * bs, 'bytes');
  try {
    for (let lbn = 0; lbn < total; lbn += per) {
      const n = Math.min(per, total - lbn);
      const vbns = new Array<number>(n).fill(0);
      let mapped = 0;
      map.walkRange(lbn, lbn + n, (l, v) => {
        vbns[l - lbn] = v;
        mapped++;
      });
      result.mappedBlocks += mapped;
      if (mapped === 0 && sink.skip) {
        sink.skip(n * bs);
      } else {
        const buf = Buffer.alloc(n * bs);
        let i = 0;
        while (i < n) {
          if (vbns[i] === 0) {
            i++;
            continue;
          }
          let j = i + 1;
          while (j < n && vbns[j] === vbns[j - 1] + 1) j++;
          vol.file.read(buf.subarray(i * bs, j * bs), vol.layout.vbnOffset(vbns[i]));
          i = j;
        }
        await sink.write(buf);
      }
      result.bytes += n * bs;
      progress.update(result.bytes);
    }
  } finally {
    progress.stop();
  }
  // the map's count is kept with it (volume check compares them too): a map block that
  // lost its entries (zeroed, or another block written over it) would export as zeros
  const counted = snapshot !== undefined ? vol.snapshot(snapshot).mappedBlocks : vol.rootRecord.mappedBlocks;
  if (result.mappedBlocks !== counted) {
    throw new CorruptError(`${vol.path}: the map of ${snapshot !== undefined ? `snapshot ${snapshot}` : 'the active file system'} holds ${result.mappedBlocks} blocks where its record counts ${counted}: the volume is damaged`, `imgstream volume check ${vol.path} lists what is wrong`);
  }
  return result;
}
