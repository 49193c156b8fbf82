// The root record a volume opens with: the valid one of the two alternating copies with
// the higher generation (a torn write of one leaves the other), checked against the file.
import { CorruptError, FormatVersionError, NewerFeatureError, NotAVolumeError } from '../core/errors.js';
import { KNOWN_FLAGS } from './volume-flags.js';
import fs from 'node:fs';
import { decodeRootRecord, ROOT_MAGIC, ROOT_RECORD_BYTES, ROOT_VERSION, type RootRecord } from '../format/volume-root.js';
import type { BlockFile } from './block-file.js';
import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE, validateBlockSize, VolumeLayout } from './layout.js';

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
    // a newer imgstream's volume, named as such with its version (exit 5 either way)
    const newer = [a, b].find((r) => !r.ok && r.reason === 'version');
    if (newer && !newer.ok && newer.reason === 'version') throw new FormatVersionError('a volume', newer.version, [ROOT_VERSION], path);
    // the file exists and holds something else (a raw image, a stream): creating a volume there would need --force and lose it
    throw new NotAVolumeError(`${path}: not an imgstream volume: it holds something else`, 'give an imgstream volume; to bring a disk image into one: imgstream volume create NEW.vol --size SIZE, then imgstream volume import NEW.vol --from FILE');
  }
  valid.sort((x, y) => y.generation - x.generation);
  const root = valid[0];
  try {
    validateBlockSize(root.blockSize);
  } catch {
    throw new CorruptError(`${path}: root record has an invalid block size ${root.blockSize}`);
  }
  const unknown = root.flags & ~KNOWN_FLAGS;
  if (unknown !== 0) throw new NewerFeatureError(`a volume with flags 0x${unknown.toString(16)}`, path);
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

/**
 * True when the file holds a volume's root record in either slot: outputs, given --force
 * or not, never replace one. Slot 0 is at offset 0; slot 1 one block in, where `volume
 * create` writes the first root (generation 1): a volume never committed to has nothing
 * at offset 0. A slot counts by its magic (a torn or damaged copy is still a volume's);
 * slot 1 also by the block size it records, which is its offset.
 */
export function holdsVolume(file: string): boolean {
  const head = Buffer.alloc(16);
  let fd = -1;
  const rootAt = (offset: number) => fs.readSync(fd, head, 0, head.length, offset) === head.length && head.toString('latin1', 0, ROOT_MAGIC.length) === ROOT_MAGIC;
  try {
    fd = fs.openSync(file, 'r');
    if (rootAt(0)) return true;
    for (let bs = MIN_BLOCK_SIZE; bs <= MAX_BLOCK_SIZE; bs *= 2) if (rootAt(bs) && head.readUInt32LE(12) === bs) return true;
    return false;
  } catch {
    return false; // unreadable: opening it for writing tells why
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
}
