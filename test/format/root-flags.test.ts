// The root record's flags word holds the volume's own bits (volume/volume-flags.ts: block
// device, mirror destination, mirror broken off) beside the format's (every shadow
// snapshot tainted): each survives a round trip whatever the others are. The taint bit
// once took the mirror bit's place, and every mirror stopped being one at its first CP.
import { describe, expect, it } from 'vitest';
import { decodeRootRecord, encodeRootRecord, ROOT_FLAG_ALL_SHADOWS_TAINTED, type RootRecord } from '../../src/format/volume-root.js';
import { FLAG_BLOCK_DEVICE, FLAG_MIRROR, FLAG_MIRROR_BROKEN } from '../../src/volume/volume-flags.js';

const base: RootRecord = {
  blockSize: 4096, nblocks: 1024, logicalSize: 1 << 20, maxSnapshots: 8, mapDepth: 1, uuid: '00'.repeat(16), createdMs: 1, flags: 0,
  generation: 2, cpTimeMs: 2, mapRoot: 0, journalHead: 0, journalCount: 0, journalCrc: 0, moaCurrent: 0, nextSnapshotId: 1,
  allocCursor: 1, usedBlocks: 0, mappedBlocks: 0, moaSwaps: 0, taintedShadows: [], allShadowsTainted: false,
};

describe('root record flags', () => {
  it('the volume flags and the taint flag are distinct bits', () => {
    const volumeBits = [FLAG_BLOCK_DEVICE, FLAG_MIRROR, FLAG_MIRROR_BROKEN];
    for (const b of volumeBits) expect(b & ROOT_FLAG_ALL_SHADOWS_TAINTED, `bit ${b}`).toBe(0);
  });

  it('every combination survives a round trip', () => {
    for (let flags = 0; flags < 8; flags++) {
      for (const all of [false, true]) {
        const d = decodeRootRecord(encodeRootRecord({ ...base, flags, allShadowsTainted: all, taintedShadows: all ? [] : [3, 5] }));
        expect(d.ok).toBe(true);
        if (!d.ok) continue;
        expect(d.record.flags, `flags ${flags}, all tainted ${all}`).toBe(flags);
        expect(d.record.allShadowsTainted).toBe(all);
      }
    }
  });
});
