// A storage image of one volume: parse the expression, check it against the volume's
// planes, evaluate it in one pass over the planes it names. No data block is read.
import { evaluateImage, parseExpression, resolveExpression, type StorageImageSummary } from '../image/index.js';
import { noProgress, type Progress } from '../core/progress.js';
import type { Volume } from './volume.js';

export function storageImageOf(vol: Volume, expression: string, opts: { ranges?: boolean } = {}, progress: Progress = noProgress): StorageImageSummary {
  const source = vol.planeSource();
  const resolved = resolveExpression(parseExpression(expression), source);
  progress.start('evaluating', source.chunks, 'blocks');
  try {
    return evaluateImage(resolved, source, { ranges: opts.ranges, onProgress: (done) => progress.update(done) });
  } finally {
    progress.stop();
  }
}
