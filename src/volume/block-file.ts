// Positional, synchronous I/O on the volume file or block device. Synchronous on purpose:
// a consistency point is a strict sequence of writes and flushes, and the engine never
// has more than one of them in flight.
import fs from 'node:fs';
import { FileTooLargeError, fromSystemError, IoError, NotAVolumeError } from '../core/errors.js';

/** What a file that cannot hold a volume is, in words. */
function kindOf(st: fs.Stats): string {
  if (st.isFIFO()) return 'a named pipe';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  return 'a special file';
}

/**
 * Refuses a file no volume can be in: a volume is a regular file or a block device (a
 * directory is refused by the caller, with its own words). Checked on a stat, before any
 * open: opening a named pipe waits for a writer forever (read-write, its first pread
 * fails with ESPIPE). `notA` and `hint` name what was wanted when that is not a volume
 * (a protection destination: a directory holding the volume it is based on).
 */
export function refuseNonVolumeFile(path: string, st: fs.Stats, notA = 'a volume', hint = 'give an imgstream volume file (or a block device holding one)'): void {
  if (!st.isFile() && !st.isBlockDevice() && !st.isDirectory()) throw new NotAVolumeError(`${path}: is ${kindOf(st)}, not ${notA}`, hint);
}

export class BlockFile {
  private constructor(readonly path: string, readonly fd: number, readonly writable: boolean, readonly isBlockDevice: boolean) {}

  static open(path: string, writable: boolean): BlockFile {
    let fd: number;
    try {
      refuseNonVolumeFile(path, fs.statSync(path));
      fd = fs.openSync(path, writable ? 'r+' : 'r');
    } catch (err) {
      throw fromSystemError(err, path, 'opening the volume');
    }
    const st = fs.fstatSync(fd);
    if (st.isDirectory()) {
      fs.closeSync(fd);
      throw fromSystemError(Object.assign(new Error(), { code: 'EISDIR' }), path, 'opening');
    }
    return new BlockFile(path, fd, writable, st.isBlockDevice());
  }

  /** Size in bytes: the file size, or the capacity of a block device. */
  size(): number {
    const st = fs.fstatSync(this.fd);
    if (!this.isBlockDevice) return st.size;
    return blockDeviceBytes(st.rdev, this.path);
  }

  /** Block contents that reads return instead of the file's (see setOverlay), by file block. */
  private overlay: Map<number, Uint8Array> | null = null;
  private overlayBlockSize = 0;

  /**
   * Makes reads return `blocks` (file block number -> contents of `blockSize` bytes)
   * instead of what the file holds there: a reader that may not write sees a committed
   * CP whose journal is not yet applied in place (metadata, and data blocks a mirror
   * transfer replaced) as it will be. Empty: reads the file alone again.
   */
  setOverlay(blockSize: number, blocks: Map<number, Uint8Array>): void {
    this.overlay = blocks.size > 0 ? new Map(blocks) : null;
    this.overlayBlockSize = blockSize;
  }

  /** True while reads see an overlay (so only read() tells what the volume holds). */
  get overlaid(): boolean {
    return this.overlay !== null;
  }

  read(buf: Uint8Array, position: number): void {
    let done = 0;
    try {
      while (done < buf.length) {
        const n = fs.readSync(this.fd, buf, done, buf.length - done, position + done);
        if (n === 0) {
          buf.fill(0, done);
          break; // past the end of a sparse file that was never extended: zeros
        }
        done += n;
      }
    } catch (err) {
      throw fromSystemError(err, this.path, 'reading');
    }
    if (this.overlay) this.applyOverlay(buf, position);
  }

  private applyOverlay(buf: Uint8Array, position: number): void {
    const bs = this.overlayBlockSize;
    const end = position + buf.length;
    for (const [block, content] of this.overlay!) {
      const from = Math.max(position, block * bs);
      const to = Math.min(end, (block + 1) * bs);
      if (from < to) buf.set(content.subarray(from - block * bs, to - block * bs), from - position);
    }
  }

  write(buf: Uint8Array, position: number): void {
    let done = 0;
    try {
      while (done < buf.length) done += fs.writeSync(this.fd, buf, done, buf.length - done, position + done);
    } catch (err) {
      throw fromSystemError(err, this.path, 'writing');
    }
  }

  writev(bufs: Uint8Array[], position: number): void {
    if (bufs.length === 1) return this.write(bufs[0], position);
    let total = 0;
    for (const b of bufs) total += b.length;
    try {
      const n = fs.writevSync(this.fd, bufs as NodeJS.ArrayBufferView[], position);
      if (n === total) return;
    } catch (err) {
      throw fromSystemError(err, this.path, 'writing');
    }
    // short vectored write: fall back to one write per buffer
    let pos = position;
    for (const b of bufs) {
      this.write(b, pos);
      pos += b.length;
    }
  }

  sync(): void {
    try {
      fs.fdatasyncSync(this.fd);
    } catch (err) {
      throw fromSystemError(err, this.path, 'flushing');
    }
  }

  truncate(bytes: number): void {
    try {
      fs.ftruncateSync(this.fd, bytes);
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code === 'EFBIG') throw new FileTooLargeError(`${this.path}: the file system cannot hold a file of ${bytes} bytes`, 'choose a smaller --volume-size, or put the volume on a block device', bytes);
      throw fromSystemError(err, this.path, 'sizing the volume');
    }
  }

  close(): void {
    try {
      fs.closeSync(this.fd);
    } catch {
      /* already closed */
    }
  }
}

function blockDeviceBytes(rdev: number, path: string): number {
  const major = Math.floor(rdev / 256) & 0xfff;
  const minor = (rdev & 0xff) | ((Math.floor(rdev / 1048576) & 0xfff) << 8);
  try {
    const sectors = Number(fs.readFileSync(`/sys/dev/block/${major}:${minor}/size`, 'utf8').trim());
    return sectors * 512;
  } catch {
    throw new IoError(`${path}: cannot tell the size of this block device`);
  }
}
