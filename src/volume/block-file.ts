// Positional, synchronous I/O on the volume file or block device. Synchronous on purpose:
// a consistency point is a strict sequence of writes and flushes, and the engine never
// has more than one of them in flight.
import fs from 'node:fs';
import { fromSystemError, IoError } from '../errors.js';

export class BlockFile {
  private constructor(readonly path: string, readonly fd: number, readonly writable: boolean, readonly isBlockDevice: boolean) {}

  static open(path: string, writable: boolean): BlockFile {
    let fd: number;
    try {
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

  read(buf: Uint8Array, position: number): void {
    let done = 0;
    try {
      while (done < buf.length) {
        const n = fs.readSync(this.fd, buf, done, buf.length - done, position + done);
        if (n === 0) {
          buf.fill(0, done);
          return; // past the end of a sparse file that was never extended: zeros
        }
        done += n;
      }
    } catch (err) {
      throw fromSystemError(err, this.path, 'reading');
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
      if (e.code === 'EFBIG') throw new IoError(`${this.path}: the file system cannot hold a file of ${bytes} bytes`, 'choose a smaller --volume-size, or put the volume on a block device');
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
