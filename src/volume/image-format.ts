// What `volume import` is given: the magic numbers of the disk image and archive formats
// people mistake for raw images. Importing a qcow2 file's bytes as a raw disk replaces the
// whole active file system with a container's metadata, so an import refuses a known
// format unless told the bytes are meant (--raw). The signatures are those qemu's block
// drivers and the formats' specifications give; a raw disk starts with a boot sector,
// a partition table, a file system or zeros, none of which begins with one of them.
import fs from 'node:fs';
import { InvalidInputError, fromSystemError } from '../core/errors.js';
import type { ImageSource } from './import.js';

export interface KnownFormat {
  /** The name qemu-img and the user know it by. */
  name: string;
  /** 'disk': a disk image container (qemu-img converts it); 'compressed': an archive stream. */
  kind: 'disk' | 'compressed';
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
];

/** Bytes of the image's start that detectImageFormat needs. */
export const FORMAT_HEAD_BYTES = 512;

/** The known format `head` (the first bytes of an image) starts with, or null. `tail`: its last 512 bytes, when known (a fixed VHD is raw data followed by a footer). */
export function detectImageFormat(head: Uint8Array, tail?: Uint8Array): KnownFormat | null {
  const buf = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  for (const s of SIGNATURES) {
    if (buf.length < s.offset + s.magic.length || !buf.subarray(s.offset, s.offset + s.magic.length).equals(s.magic)) continue;
    if (s.name === 'bzip2' && !/^BZh[1-9]$/.test(buf.toString('latin1', 0, 4))) continue;
    return { name: s.name, kind: s.kind };
  }
  if (tail && tail.length === 512 && Buffer.from(tail.buffer, tail.byteOffset, 8).toString('latin1') === 'conectix') return { name: 'vpc (VHD, fixed)', kind: 'disk' };
  return null;
}

function refusal(name: string, f: KnownFormat): InvalidInputError {
  const shown = name === 'stdin' ? '-' : name;
  const hint =
    f.kind === 'compressed'
      ? `decompress it into the import: ${f.name === 'gzip' ? 'gzip' : f.name} -dc FILE | imgstream volume import VOL --from -; or pass --raw to import these bytes as they are`
      : f.name === 'luks'
        ? 'open it with cryptsetup and import the mapped device; or pass --raw to import these bytes as they are'
        : `convert it first: qemu-img convert -O raw ${name === 'stdin' ? 'IMAGE' : shown} IMAGE.raw; or pass --raw to import these bytes as they are`;
  return new InvalidInputError(`${name}: is a ${f.name} ${f.kind === 'disk' ? 'image' : 'compressed stream'}, not a raw disk image`, hint);
}

/** Refuses a regular file or device that starts (or, when its size is known, ends) like a known format. */
function checkFile(file: string, size: number | undefined): void {
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
}

function isBlockDevice(file: string): boolean {
  try {
    return fs.statSync(file).isBlockDevice();
  } catch {
    return false;
  }
}

/** Passes a pipe's bytes on once its first FORMAT_HEAD_BYTES are seen not to be a known format. */
async function* checkedStream(name: string, bytes: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const held: Uint8Array[] = [];
  let heldBytes = 0;
  let checked = false;
  for await (const piece of bytes) {
    if (checked) {
      yield piece;
      continue;
    }
    held.push(piece);
    heldBytes += piece.length;
    if (heldBytes < FORMAT_HEAD_BYTES) continue;
    const f = detectImageFormat(Buffer.concat(held));
    if (f) throw refusal(name, f);
    checked = true;
    yield* held;
    held.length = 0;
  }
  if (!checked) {
    const f = detectImageFormat(Buffer.concat(held));
    if (f) throw refusal(name, f);
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
