// The planes of a volume as a source for storage image expressions (../image): the active
// plane, the two mark-on-allocate planes and one per snapshot by name, each read front
// to back by one scanner per plane.
import type { SnapshotEntry } from '../format/snapshot-entry.js';
import type { PlaneRef, PlaneSource } from '../image/plane-source.js';
import { PLANE_ACTIVE, PLANE_MOA, type VolumeLayout } from './layout.js';
import type { PlaneScanner } from './plane-scanner.js';

export function volumePlaneSource(layout: VolumeLayout, snapshots: SnapshotEntry[], scanner: (plane: number) => PlaneScanner): PlaneSource {
  const refs = new Map<string, PlaneRef>();
  refs.set('active', { id: PLANE_ACTIVE, snapshot: false, name: 'active' });
  refs.set('moa.0', { id: PLANE_MOA[0], snapshot: false, name: 'moa.0' });
  refs.set('moa.1', { id: PLANE_MOA[1], snapshot: false, name: 'moa.1' });
  for (const s of snapshots) refs.set(s.name, { id: layout.snapshotPlane(s.slot), snapshot: true, name: s.name });
  const scanners = new Map<number, PlaneScanner>();
  return {
    nblocks: layout.nblocks,
    blockSize: layout.blockSize,
    wordsPerChunk: layout.wordsPerPlaneBlock,
    chunks: layout.planeBlocks,
    resolve: (name) => refs.get(name),
    names: () => [...refs.keys()],
    chunk: (id, c) => {
      let scan = scanners.get(id);
      if (!scan) scanners.set(id, (scan = scanner(id)));
      return scan.words(c);
    },
  };
}
