// What `volume import` is given: the magic numbers of the disk image and archive formats
// people mistake for raw images. Importing a qcow2 file's bytes as a raw disk replaces the
// whole active file system with a container's metadata, so an import refuses a known
// format unless told the bytes are meant (--raw). The signatures are those qemu's block
// drivers and the formats' specifications give; a raw disk starts with a boot sector,
// a partition table, a file system or zeros, none of which begins with one of them.
// imgstream's own files are refused too: a dump stream or tape file imported by mistake
// for `restore` would become the disk's contents, exit 0.
import fs from 'node:fs';
import path from 'node:path';
import { InvalidInputError, fromSystemError } from '../core/errors.js';
import type { ImageSource } from './import.js';
import { STREAM_MAGIC } from '../format/image-stream.js';
import { ROOT_MAGIC } from '../format/volume-root.js';
import { holdsVolume } from './root-reader.js';
import { MAX_BLOCK_SIZE, MIN_BLOCK_SIZE } from './layout.js';

export interface KnownFormat {
  /** The name qemu-img and the user know it by. */
  name: string;
  /** 'disk': a disk image container (qemu-img converts it); 'compressed': an archive stream; 'imgstream': a file of imgstream's own (a dump, a tape file, a volume). */
  kind: 'disk' | 'compressed' | 'imgstream';
}

interface Signature extends KnownFormat {
  offset: number;
  magic: Buffer;
}

const sig = (name: string, kind: KnownFormat['kind'], offset: number, magic: string | number[]): Signature => ({ name, kind, offset, magic: typeof magic === 'string' ? Buffer.from(magic, 'latin1') : Buffer.from(magic) });

const SIGNATURES: Signature[] = [
  sig('qcow2', 'disk', 0, 'QFI\xfb'), // qcow (v1) and qcow2 share it; the version follows
  sig('qed', 'disk', 0, 'QED\0'),
  sig('vmdk', 'disk', 0, 'KDMV'), // hosted sparse extent (monolithicSparse, streamOptimized)
  sig('vmdk', 'disk', 0, 'COWD'), // ESX sparse extent
  sig('vmdk', 'disk', 0, '# Disk DescriptorFile'),
  sig('vhdx', 'disk', 0, 'vhdxfile'),
  sig('vpc (VHD)', 'disk', 0, 'conectix'), // dynamic VHD: a copy of the footer first
  sig('vdi', 'disk', 0x40, [0x7f, 0x10, 0xda, 0xbe]), // 0xbeda107f, little-endian
  sig('luks', 'disk', 0, 'LUKS\xba\xbe'), // LUKS1 and LUKS2: encrypted, open it with cryptsetup
  sig('parallels', 'disk', 0, 'WithoutFreeSpace'),
  sig('parallels', 'disk', 0, 'WithouFreSpacExt'),
  sig('gzip', 'compressed', 0, [0x1f, 0x8b, 0x08]),
  sig('zstd', 'compressed', 0, [0x28, 0xb5, 0x2f, 0xfd]),
  sig('xz', 'compressed', 0, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00]),
  sig('bzip2', 'compressed', 4, [0x31, 0x41, 0x59, 0x26, 0x53, 0x59]), // after "BZh1".."BZh9"
  sig('image stream', 'imgstream', 0, STREAM_MAGIC), // a dump (encrypted ones too)
  sig('volume', 'imgstream', 0, ROOT_MAGIC),
  sig('tape file', 'imgstream', 0, 'imgstream/'), // a tar archive whose first member is an imgstream label
];

/** Bytes of the image's start that detectImageFormat needs. */
export const FORMAT_HEAD_BYTES = 512;

/** The known format `head` (the first bytes of an image) starts with, or null. `tail`: its last 512 bytes, when known (a fixed VHD is raw data followed by a footer). */
export function detectImageFormat(head: Uint8Array, tail?: Uint8Array): KnownFormat | null {
  const buf = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  for (const s of SIGNATURES) {
    if (buf.length < s.offset + s.magic.length || !buf.subarray(s.offset, s.offset + s.magic.length).equals(s.magic)) continue;
    if (s.name === 'bzip2' && !/^BZh[1-9]$/.test(buf.toString('latin1', 0, 4))) continue;
    if (s.name === 'tape file' && buf.toString('latin1', 257, 262) !== 'ustar') continue;
    return { name: s.name, kind: s.kind };
  }
  if (tail && tail.length === 512 && Buffer.from(tail.buffer, tail.byteOffset, 8).toString('latin1') === 'conectix') return { name: 'vpc (VHD, fixed)', kind: 'disk' };
  return null;
}

function refusal(name: string, f: KnownFormat): InvalidInputError {
  const shown = name === 'stdin' ? '-' : name;
  if (f.kind === 'imgstream') return ownFileRefusal(name, shown, f);
  const hint =
    f.kind === 'compressed'
      ? `decompress it into the import: ${f.name === 'gzip' ? 'gzip' : f.name} -dc FILE | imgstream volume import VOL --from -; or pass --raw to import these bytes as they are`
      : f.name === 'luks'
        ? 'open it with cryptsetup and import the mapped device; or pass --raw to import these bytes as they are'
        : `convert it first: qemu-img convert -O raw ${name === 'stdin' ? 'IMAGE' : shown} IMAGE.raw; or pass --raw to import these bytes as they are`;
  return new InvalidInputError(`${name}: is a ${f.name} ${f.kind === 'disk' ? 'image' : 'compressed stream'}, not a raw disk image`, hint);
}

function ownFileRefusal(name: string, shown: string, f: KnownFormat): InvalidInputError {
  const raw = 'or pass --raw to import these bytes as they are';
  const hint =
    f.name === 'image stream'
      ? `a dump is restored, not imported: imgstream restore --from ${shown} --to VOL; ${raw}`
      : f.name === 'tape file'
        ? `a tape's dumps are restored, not imported: imgstream restore --from tape:${name === 'stdin' ? 'DIR' : path.dirname(name)} --to VOL; ${raw}`
        : `to copy its disk, export it first: imgstream volume export ${name === 'stdin' ? 'VOL' : shown} --to IMAGE.raw, or mirror it: imgstream mirror update ${name === 'stdin' ? 'VOL' : shown} --to DEST; ${raw}`;
  return new InvalidInputError(`${name}: is an imgstream ${f.name}, not a raw disk image`, hint);
}

/** An empty image would unmap the whole disk: what a pipe gives when the command feeding it failed (`zstd -dc missing.zst | ...`). */
function emptyRefusal(name: string): InvalidInputError {
  return new InvalidInputError(
    `${name}: the image is empty (0 bytes): importing it would unmap the whole disk`,
    `${name === 'stdin' ? 'if the command feeding the pipe failed, run it again once it works' : `check that ${name} is the image you meant`}; to unmap the whole disk on purpose, pass --raw`,
  );
}

/** Refuses a regular file or device that starts (or, when its size is known, ends) like a known format. */
function checkFile(file: string, size: number | undefined): void {
  if (size === 0) throw emptyRefusal(file);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw fromSystemError(err, file, 'opening the image');
  }
  try {
    const head = Buffer.alloc(FORMAT_HEAD_BYTES);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    let tail: Buffer | undefined;
    if (size !== undefined && size >= 1024) {
      tail = Buffer.alloc(512);
      fs.readSync(fd, tail, 0, 512, size - 512);
    }
    const f = detectImageFormat(head.subarray(0, n), tail);
    if (f) throw refusal(file, f);
  } finally {
    fs.closeSync(fd);
  }
  // a volume never committed to since its creation has its root one block in, not at 0
  if (holdsVolume(file)) throw refusal(file, VOLUME);
}

const VOLUME: KnownFormat = { name: 'volume', kind: 'imgstream' };

/** Bytes a pipe whose start is all zeros is held for: a volume's root slot 1 is one block in, and blocks are at most 1 MiB. */
const SLOT1_PROBE_BYTES = MAX_BLOCK_SIZE + ROOT_MAGIC.length + 8;

/** True when `buf`, zeros up to `at`, holds a volume's root slot 1 there: its magic one block in, recording that block size. */
function volumeSlot1(buf: Buffer, at: number): boolean {
  return buf.length >= at + 16 && buf.toString('latin1', at, at + ROOT_MAGIC.length) === ROOT_MAGIC && buf.readUInt32LE(at + 12) === at;
}

function firstNonZero(buf: Buffer): number {
  for (let i = 0; i < buf.length; i++) if (buf[i] !== 0) return i;
  return -1;
}

function isBlockDevice(file: string): boolean {
  try {
    return fs.statSync(file).isBlockDevice();
  } catch {
    return false;
  }
}

/** Passes a pipe's bytes on once its first bytes are seen not to be a known format (a start of zeros: up to a volume's root slot 1). */
async function* checkedStream(name: string, bytes: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const held: Uint8Array[] = [];
  let heldBytes = 0;
  let checked = false;
  const check = (end: boolean): boolean => {
    const head = Buffer.concat(held);
    const f = detectImageFormat(head);
    if (f) throw refusal(name, f);
    // a raw disk may start with zeros too: held only until the first byte past them
    const z = firstNonZero(head);
    if (z < 0) return end || head.length >= SLOT1_PROBE_BYTES;
    // a fresh volume's block 0 is zeros, its root slot 1 the first byte past them
    if (z >= MIN_BLOCK_SIZE && z <= MAX_BLOCK_SIZE && (z & (z - 1)) === 0) {
      if (volumeSlot1(head, z)) throw refusal(name, VOLUME);
      if (!end && head.length < z + 16) return false;
    }
    return true;
  };
  for await (const piece of bytes) {
    if (checked) {
      yield piece;
      continue;
    }
    held.push(piece);
    heldBytes += piece.length;
    if (heldBytes < FORMAT_HEAD_BYTES || !check(false)) continue;
    checked = true;
    yield* held;
    held.length = 0;
  }
  if (!checked) {
    if (heldBytes === 0) throw emptyRefusal(name);
    check(true);
    yield* held;
  }
}

/**
 * `source`, refused before anything is read into a volume when it is a known disk image
 * or compressed format: a file is checked at once, a pipe on its first bytes (before the
 * import has any block to write).
 */
export function refuseKnownFormats(source: ImageSource): ImageSource {
  if (source.rereadable || source.openReader) {
    checkFile(source.name, source.size);
    return source;
  }
  if (source.name !== 'stdin' && isBlockDevice(source.name)) {
    // its start can be read here without consuming anything (not so a FIFO: checked as a pipe)
    checkFile(source.name, undefined);
    return source;
  }
  return { ...source, open: () => checkedStream(source.name, source.open()) };
}
