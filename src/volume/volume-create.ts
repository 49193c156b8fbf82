// Creating a volume: its layout, first root record and zeroed metadata, in a file that
// appears whole or not at all, or on a block device.
import fs from 'node:fs';
import { removeStaleTemp, tempBeside } from '../fs/stale-temp.js';
import { randomBytes } from 'node:crypto';
import { ExistsError, FileTooLargeError, ImgstreamError, InvalidInputError, errorOfCode, fromSystemError } from '../core/errors.js';
import { formatSize } from '../core/size.js';
import { largestFileIn } from '../fs/largest-file.js';
import { encodeRootRecord, type RootRecord } from '../format/volume-root.js';
import { BlockFile } from './block-file.js';
import { holdsVolume } from './root-reader.js';
import { VolumeLock } from './volume-lock.js';
import { checkDeviceFree, refuseSignature } from '../fs/device-guard.js';
import { DEFAULT_BLOCK_SIZE, DEFAULT_MAX_SNAPSHOTS, heldBackFor, mapDepthFor, PLANE_MOA, validateBlockSize, VolumeLayout } from './layout.js';
import { FLAG_BLOCK_DEVICE } from './volume-flags.js';

export interface CreateOptions {
  /** Logical disk size in bytes. */
  size: number;
  /** Total bytes of the volume file (data, snapshots, metadata). Default: defaultBlocksFor(), plus metadata. */
  volumeSize?: number;
  blockSize?: number;
  maxSnapshots?: number;
  /** Overwrite an existing volume on a block device. */
  force?: boolean;
  /** Restore: the identity and exact geometry of the volume a stream came from. */
  uuid?: string;
  nblocks?: number;
  /**
   * When the file system holds no file as large as the layout asks (EFBIG: ext4 holds 16
   * TiB), take the largest it holds, down to `leastBlocks` VBNs; below that, refuse naming
   * the limit. Given by default when neither `volumeSize` nor `nblocks` is (the size was
   * not asked for).
   */
  fit?: { leastBlocks: number };
}

/** The fewest VBNs a volume of `logicalBlocks` works with: the disk once over, its map, and room for a CP's changes. */
export function leastBlocksFor(logicalBlocks: number): number {
  return logicalBlocks + Math.ceil(logicalBlocks / 256) + 4096;
}

/**
 * The VBNs a volume gets when no size is asked for: room to rewrite the whole disk once
 * while its old copy is still referenced (until the CP that frees it), so a volume
 * without snapshots always takes a full import or a client rewriting every block. That is
 * the disk twice, its map twice, a CP's changed plane blocks with their CP journal, and
 * the blocks held back for journals.
 */
export function defaultBlocksFor(logicalBlocks: number, blockSize: number): number {
  const fanout = blockSize / 8;
  let mapNodes = 0;
  for (let d = 0, level = logicalBlocks; d < mapDepthFor(blockSize, logicalBlocks); d++) {
    level = Math.ceil(level / fanout);
    mapNodes += level;
  }
  let n = 2 * (logicalBlocks + mapNodes);
  const planeBlocks = Math.ceil(n / (blockSize * 8));
  n += 4 * planeBlocks + 16;
  return n + heldBackFor(n);
}

export function createVolume(path: string, opts: CreateOptions): RootRecord {
  const blockSize = validateBlockSize(opts.blockSize ?? DEFAULT_BLOCK_SIZE);
  const maxSnapshots = opts.maxSnapshots ?? DEFAULT_MAX_SNAPSHOTS;
  if (!Number.isInteger(maxSnapshots) || maxSnapshots < 1 || maxSnapshots > 65535) {
    throw new InvalidInputError(`invalid snapshot limit ${maxSnapshots}`, 'use 1 to 65535');
  }
  if (!(opts.size > 0) || opts.size % blockSize !== 0) {
    throw new InvalidInputError(`invalid size ${opts.size}: the logical disk must be a positive multiple of the block size (${blockSize})`);
  }
  const logicalBlocks = opts.size / blockSize;
  let isDevice = false;
  let deviceBytes = 0;
  let lock: VolumeLock | null = null;
  try {
    const st = fs.statSync(path);
    if (st.isBlockDevice()) {
      isDevice = true;
      const f = BlockFile.open(path, false);
      deviceBytes = f.size();
      f.close();
      // either root slot: a volume never committed to has its only root in slot 1
      const volume = holdsVolume(path);
      if (volume && !opts.force) throw new ExistsError(`${path}: already holds an imgstream volume`, 'pass --force to overwrite it');
      // a volume there may be in use by another command (or served): never written over then
      lock = VolumeLock.acquire(path, st);
      checkDeviceFree(path);
      if (!volume) refuseSignature(path, opts.force === true, 'the new volume');
    } else {
      throw new ExistsError(`${path}: already exists`, 'choose another path or remove the file first');
    }
  } catch (err) {
    lock?.release();
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, path, 'creating the volume');
  }
  try {
    return createLaidOut(path, opts, { blockSize, maxSnapshots, logicalBlocks, isDevice, deviceBytes });
  } finally {
    lock?.release();
  }
}

function createLaidOut(path: string, opts: CreateOptions, g: { blockSize: number; maxSnapshots: number; logicalBlocks: number; isDevice: boolean; deviceBytes: number }): RootRecord {
  const { blockSize, maxSnapshots, logicalBlocks, isDevice, deviceBytes } = g;
  let layout: VolumeLayout;
  if (opts.nblocks !== undefined) layout = new VolumeLayout(blockSize, opts.nblocks, maxSnapshots);
  else if (isDevice) layout = VolumeLayout.fitting(blockSize, opts.volumeSize ?? deviceBytes, maxSnapshots);
  else if (opts.volumeSize !== undefined) layout = VolumeLayout.fitting(blockSize, opts.volumeSize, maxSnapshots);
  else layout = new VolumeLayout(blockSize, defaultBlocksFor(logicalBlocks, blockSize), maxSnapshots);
  if (isDevice && layout.fileBytes > deviceBytes) throw new InvalidInputError(`--volume-size is larger than the device ${path} (${deviceBytes} bytes)`);
  const now = Date.now();
  const root: RootRecord = {
    blockSize,
    nblocks: layout.nblocks,
    logicalSize: opts.size,
    maxSnapshots,
    mapDepth: mapDepthFor(blockSize, logicalBlocks),
    uuid: opts.uuid ?? randomBytes(16).toString('hex'),
    createdMs: now,
    flags: isDevice ? FLAG_BLOCK_DEVICE : 0,
    generation: 1,
    cpTimeMs: now,
    mapRoot: 0,
    journalHead: 0,
    journalCount: 0,
    journalCrc: 0,
    moaCurrent: 0,
    nextSnapshotId: 1,
    allocCursor: 1,
    usedBlocks: 0,
    mappedBlocks: 0,
    moaSwaps: 0,
    taintedShadows: [],
    allShadowsTainted: false,
  };
  const rootBlock = Buffer.alloc(blockSize);
  encodeRootRecord(root).copy(rootBlock);
  if (isDevice) {
    const f = BlockFile.open(path, true);
    try {
      const zero = Buffer.alloc(blockSize);
      f.write(zero, 0);
      f.sync();
      // table and the active and mark-on-allocate planes must read as zeros; snapshot
      // slots are written in full whenever a snapshot takes them
      const end = layout.planeBlock(PLANE_MOA[1], 0) + layout.planeBlocks;
      for (let m = 2; m < end; m++) f.write(zero, layout.metaOffset(m));
      f.sync();
      f.write(rootBlock, layout.metaOffset(1));
      f.sync();
    } finally {
      f.close();
    }
    return root;
  }
  // a new file appears whole or not at all: build it under a temporary name, then link it
  const temp = tempBeside(path, 'imgstream-new');
  removeStaleTemp(temp.dir, temp.prefix); // what a create killed here left (kill -9, a crash)
  const tmp = `${temp.dir}/${temp.prefix}${process.pid}`;
  const fit = opts.fit ?? (opts.nblocks === undefined && opts.volumeSize === undefined ? { leastBlocks: leastBlocksFor(logicalBlocks) } : undefined);
  try {
    createFile(path, tmp, layout, rootBlock);
  } catch (err) {
    if (!(err instanceof FileTooLargeError)) throw namedAsAsked(err, tmp, path);
    if (fit === undefined) throw new FileTooLargeError(err.message.split(tmp).join(path), err.hint, err.bytes); // named as asked, not by its temporary name
    // the largest file the file system holds, when it holds the disk once over
    const largest = largestFileIn(temp.dir, err.bytes, blockSize);
    let fitted: VolumeLayout | null = null;
    try {
      fitted = VolumeLayout.fitting(blockSize, largest, maxSnapshots);
    } catch {
      // too small even for its metadata
    }
    if (fitted === null || fitted.nblocks < fit.leastBlocks) {
      const least = new VolumeLayout(blockSize, fit.leastBlocks, maxSnapshots).fileBytes;
      throw new FileTooLargeError(`${path}: the file system holds files of at most ${formatSize(largest)}, too small for a volume of a ${formatSize(opts.size)} disk (at least ${formatSize(least)})`, 'put it on a file system that holds larger files (XFS, btrfs; ext4 holds 16 TiB), or on a block device', err.bytes);
    }
    root.nblocks = fitted.nblocks;
    encodeRootRecord(root).copy(rootBlock);
    createFile(path, tmp, fitted, rootBlock);
  }
  return root;
}

/** `err` with the temporary file named as the user named the volume (a full file system while it was made). */
function namedAsAsked(err: unknown, tmp: string, path: string): unknown {
  if (!(err instanceof ImgstreamError) || !err.message.includes(tmp) || err.constructor === FileTooLargeError) return err;
  return errorOfCode(err.code, err.message.split(tmp).join(path), err.hint, err.details);
}

/** The volume file at `path`, built at `tmp` and linked into place. */
function createFile(path: string, tmp: string, layout: VolumeLayout, rootBlock: Buffer): void {
  let f: BlockFile | null = null;
  try {
    fs.writeFileSync(tmp, '', { flag: 'wx' });
    f = BlockFile.open(tmp, true);
    f.truncate(layout.fileBytes);
    f.write(rootBlock, layout.metaOffset(1));
    f.sync();
    f.close();
    f = null;
    fs.linkSync(tmp, path);
  } catch (err) {
    throw fromSystemError(err, path, 'creating the volume');
  } finally {
    f?.close();
    try {
      fs.unlinkSync(tmp);
    } catch {
      /* not created */
    }
  }
}
