// The root record a volume opens with: the valid one of the two alternating copies with
// the higher generation (a torn write of one leaves the other), checked against the file.
import { CorruptError, NotAVolumeError } from '../core/errors.js';
import fs from 'node:fs';
import { decodeRootRecord, ROOT_MAGIC, ROOT_RECORD_BYTES, type RootRecord } from '../format/volume-root.js';
import type { BlockFile } from './block-file.js';
import { validateBlockSize, VolumeLayout } from './layout.js';

export function readRootRecord(file: BlockFile, path: string): RootRecord {
  const head = Buffer.alloc(ROOT_RECORD_BYTES);
  file.read(head, 0);
  const a = decodeRootRecord(head);
  // slot 1 sits one block further; the block size is in either valid slot
  let b: ReturnType<typeof decodeRootRecord> = { ok: false, reason: 'magic' };
  const bs = a.ok ? a.record.blockSize : probeBlockSize(file);
  if (bs > 0) {
    const second = Buffer.alloc(ROOT_RECORD_BYTES);
    file.read(second, bs);
    b = decodeRootRecord(second);
  }
  const valid = [a, b].filter((r): r is { ok: true; record: RootRecord } => r.ok).map((r) => r.record);
  if (valid.length === 0) {
    const why = [a, b].some((r) => !r.ok && r.reason === 'version') ? 'of an unsupported format version' : 'not an imgstream volume';
    throw new NotAVolumeError(`${path}: ${why}`, 'create a volume with: imgstream volume create');
  }
  valid.sort((x, y) => y.generation - x.generation);
  const root = valid[0];
  try {
    validateBlockSize(root.blockSize);
  } catch {
    throw new CorruptError(`${path}: root record has an invalid block size ${root.blockSize}`);
  }
  const layout = new VolumeLayout(root.blockSize, root.nblocks, root.maxSnapshots);
  const size = file.size();
  if (size < layout.fileBytes) throw new CorruptError(`${path}: volume is truncated (${size} bytes, needs ${layout.fileBytes})`, 'the file was cut short: restore it from a copy');
  return root;
}

/** Finds slot 1 when slot 0 is unreadable: it starts at one block size in. */
function probeBlockSize(file: BlockFile): number {
  const probe = Buffer.alloc(ROOT_RECORD_BYTES);
  for (let bs = 4096; bs <= 1 << 20; bs *= 2) {
    file.read(probe, bs);
    const r = decodeRootRecord(probe);
    if (r.ok && r.record.blockSize === bs) return bs;
  }
  return 0;
}

/** True when the file starts with a volume's root record magic: outputs given --force never replace one. */
export function holdsVolume(file: string): boolean {
  const head = Buffer.alloc(ROOT_MAGIC.length);
  let fd = -1;
  try {
    fd = fs.openSync(file, 'r');
    return fs.readSync(fd, head, 0, head.length, 0) === head.length && head.toString('latin1') === ROOT_MAGIC;
  } catch {
    return false; // unreadable: opening it for writing tells why
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}
