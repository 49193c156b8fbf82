// Where raw images come from and go to: files, block devices, stdin and stdout.
// Exports to a regular file are written under a temporary name and renamed into place
// when complete, so an interrupted export never leaves a partial file under the name
// asked for; zero runs become holes (sparse output).
import { openDeviceToWrite } from '../fs/device-guard.js';
import fs from 'node:fs';
import { removeStaleTemp, tempBeside } from '../fs/stale-temp.js';
import { refuseDanglingLink, replacementTarget } from '../fs/link-target.js';
import path from 'node:path';
import { ExistsError, InvalidInputError, fromSystemError } from '../core/errors.js';
import type { ImageReader, ImageSource } from './import.js';
import { preadFully } from './image-compare.js';
import type { ImageSink } from './export.js';
import { fsyncUnlessUnsupported } from '../media/file/file-medium.js';
import { holdsVolume } from './root-reader.js';
import { stdoutFailure } from '../fs/stdout-failure.js';

const READ_BYTES = 8 << 20;

export function fileSource(file: string): ImageSource {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    throw fromSystemError(err, file, 'opening the image');
  }
  if (st.isDirectory()) throw new InvalidInputError(`${file}: is a directory, not an image`);
  let size: number | undefined = st.size;
  if (st.isBlockDevice()) size = undefined;
  const regular = st.isFile();
  return {
    name: file,
    size,
    rereadable: regular,
    openReader: regular ? () => fileReader(file) : undefined,
    async *open() {
      let fh: fs.promises.FileHandle;
      try {
        fh = await fs.promises.open(file, 'r');
      } catch (err) {
        throw fromSystemError(err, file, 'opening the image');
      }
      // two buffers in turn, the next read already running on the thread pool while the
      // consumer works on the current one (it is done with a buffer before asking again)
      const bufs = [Buffer.allocUnsafeSlow(READ_BYTES), Buffer.allocUnsafeSlow(READ_BYTES)];
      let pos = 0;
      const readInto = (buf: Buffer) =>
        fh.read(buf, 0, READ_BYTES, regular ? pos : null).then(
          (r) => r.bytesRead,
          (err) => Promise.reject(fromSystemError(err, file, 'reading the image')),
        );
      let turn = 0;
      let pending = readInto(bufs[turn]);
      try {
        for (;;) {
          const n = await pending;
          if (n === 0) return;
          pos += n;
          const current = bufs[turn];
          turn ^= 1;
          pending = readInto(bufs[turn]);
          yield current.subarray(0, n);
        }
      } finally {
        // a consumer that stops early leaves one read running: let it end before closing
        await pending.catch(() => undefined);
        await fh.close().catch(() => undefined);
      }
    },
  };
}

/** Positional reads of an image file, through one descriptor. */
function fileReader(file: string): ImageReader {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (err) {
    throw fromSystemError(err, file, 'opening the image');
  }
  return {
    fd,
    read(position, buf) {
      try {
        return preadFully(fd, buf, position);
      } catch (err) {
        throw fromSystemError(err, file, 'reading the image');
      }
    },
    close: () => fs.closeSync(fd),
  };
}

export function stdinSource(): ImageSource {
  if (process.stdin.isTTY) throw new InvalidInputError('refusing to read an image from a terminal', 'pipe an image in, or pass --from FILE');
  return {
    name: 'stdin',
    rereadable: false,
    open: () => process.stdin,
  };
}

export interface FileSink extends ImageSink {
  /** Makes the output visible under its name (regular files: rename into place). */
  finish(): Promise<void>;
  /** Removes what was written (on failure). */
  discard(): void;
}

export function fileSink(file: string, opts: { force: boolean; size: number }): FileSink {
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, file, 'opening the output');
  }
  if (st?.isDirectory()) throw new InvalidInputError(`${file}: is a directory`, 'give a file name');
  const device = !!st && (st.isBlockDevice() || st.isCharacterDevice());
  if (st && (st.isFile() || st.isBlockDevice()) && holdsVolume(file)) throw new InvalidInputError(`${file}: is an imgstream volume; an export never writes over a volume`, 'give the image another name');
  if (st && !device && !opts.force) throw new ExistsError(`${file}: already exists`, 'pass --force to replace it');
  if (!st && !opts.force) refuseDanglingLink(file, 'pass --force to replace the link, or give another name');
  // --force over a symbolic link to a file replaces that file, as a shell's > does (replacing the link itself cut it off)
  const into = st?.isFile() ? replacementTarget(file) : file;
  const temp = device ? null : tempBeside(into, 'imgstream');
  // what an export stopped by a signal left (it writes synchronously: a signal ends it where it is)
  if (temp) removeStaleTemp(temp.dir, temp.prefix);
  const target = temp ? path.join(temp.dir, `${temp.prefix}${process.pid}`) : file;
  let fd: number;
  if (st?.isBlockDevice()) {
    fd = openDeviceToWrite(file, opts.force, 'the export');
  } else {
    try {
      fd = fs.openSync(target, device ? 'r+' : 'w');
    } catch (err) {
      throw fromSystemError(err, file, 'opening the output');
    }
  }
  let pos = 0;
  return {
    write(data) {
      let done = 0;
      try {
        while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, pos + done);
      } catch (err) {
        throw fromSystemError(err, file, 'writing the image');
      }
      pos += data.length;
    },
    skip: device
      ? undefined
      : (bytes) => {
          pos += bytes;
        },
    async finish() {
      try {
        if (!device) fs.ftruncateSync(fd, opts.size);
        fsyncUnlessUnsupported(fd);
        fs.closeSync(fd);
        if (!device) fs.renameSync(target, into);
      } catch (err) {
        throw fromSystemError(err, file, 'finishing the image');
      }
    },
    discard() {
      try {
        fs.closeSync(fd);
      } catch {
        /* closed */
      }
      if (!device) fs.rmSync(target, { force: true });
    },
  };
}

/** Raw bytes to stdout (`volume export --to -`): a reader that goes away (`| head`) is one line, exit 10. */
export function stdoutSink(): FileSink {
  const out = process.stdout;
  let failed: Error | null = null;
  out.on('error', (err) => {
    failed = err;
  });
  const check = (): void => {
    if (failed) throw stdoutFailure(failed);
  };
  return {
    async write(data) {
      check();
      // settle once the bytes left (or the write failed): the caller reuses the buffer after this
      await new Promise<void>((resolve) => out.write(data, () => resolve()));
      check();
    },
    async finish() {},
    discard() {},
  };
}

/** Splits "VOL@SNAPSHOT": a path that exists as given is a volume whatever it contains. */
export function parseVolumeRef(ref: string): { volume: string; snapshot?: string } {
  if (fs.existsSync(ref)) return { volume: ref };
  const at = ref.lastIndexOf('@');
  if (at <= 0) return { volume: ref };
  if (at === ref.length - 1) throw new InvalidInputError(`${ref}: no snapshot name after "@"`, `give ${ref.slice(0, at)}@SNAPSHOT for a snapshot, or ${ref.slice(0, at)} alone for the active file system`);
  return { volume: ref.slice(0, at), snapshot: ref.slice(at + 1) };
}
