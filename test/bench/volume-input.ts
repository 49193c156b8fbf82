// The part of a volume file that its operations read, as a measurement input for
// settle(): metadata and every VBN allocated so far, not the sparse rest.
import { withVolume } from '../../src/volume/index.js';
import type { Input } from './cache-state.js';

export async function volumeData(file: string): Promise<Input> {
  const bytes = await withVolume(file, false, (v) => v.layout.vbnOffset(v.rootRecord.allocCursor));
  return { path: file, offset: 0, bytes };
}
