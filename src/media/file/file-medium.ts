// A stream in a regular file (or written to a block device). The file is written under a
// temporary name beside it and renamed into place by finish(), after fsync: a killed dump
// never leaves a file that looks like a stream under the name asked for. A regular file
// is written with direct I/O where the file system allows it (see direct-appender.ts).
import { openDeviceToWrite } from '../../fs/device-guard.js';
import fs from 'node:fs';
import path from 'node:path';
import { ExistsError, InvalidInputError, fromSystemError } from '../../core/errors.js';
import type { MediaPosition, SourceStream, StreamSource, StreamTarget } from '../medium.js';
import { removeStaleTemp, tempBeside } from '../../fs/stale-temp.js';
import { refuseDanglingLink, replacementTarget } from '../../fs/link-target.js';
import { DirectAppender } from '../../fs/direct-appender.js';
import { writeFully } from '../../fs/direct-io.js';
import { readAheadBytes, type ReadInto } from '../read-ahead.js';
import { EarlyWriteback } from '../../fs/writeback.js';
import { holdsVolume } from '../../volume/root-reader.js';

export function fileTarget(file: string, opts: { force?: boolean } = {}): StreamTarget {
  let st: fs.Stats | null = null;
  try {
    st = fs.statSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw fromSystemError(err, file, 'opening the target');
  }
  if (st?.isDirectory()) throw new InvalidInputError(`${file}: is a directory`, 'give a file name, or tape:DIR for a tape directory');
  const device = !!st && (st.isBlockDevice() || st.isCharacterDevice());
  // a volume (the dump's own source, or any other) is never written over, --force or not
  if (st && (st.isFile() || st.isBlockDevice()) && holdsVolume(file)) {
    throw new InvalidInputError(`${file}: is an imgstream volume; a dump never writes over a volume`, 'give the stream another name');
  }
  if (st && !device && !opts.force) throw new ExistsError(`${file}: already exists`, 'pass --force to replace it');
  if (!st && !opts.force) refuseDanglingLink(file, 'pass --force to replace the link, or give another name');
  // --force over a symbolic link to a file replaces that file, as a shell's > does (replacing the link itself cut it off)
  const into = st?.isFile() ? replacementTarget(file) : file;
  const temp = device ? null : tempBeside(into, 'partial');
  if (temp) removeStaleTemp(temp.dir, temp.prefix);
  const partial = temp ? path.join(temp.dir, `${temp.prefix}${process.pid}`) : file;
  let fd: number;
  if (st?.isBlockDevice()) {
    fd = openDeviceToWrite(file, opts.force === true, 'the dump');
  } else {
    try {
      fd = fs.openSync(partial, device ? 'w' : 'wx');
    } catch (err) {
      throw fromSystemError(err, file, 'creating the target');
    }
  }
  let closed = false;
  let offset = 0;
  const appender = device ? null : new DirectAppender(fd, partial);
  // through the page cache: the disk writes while the dump goes on, so finish()'s fsync finds little left
  const writeback = new EarlyWriteback(fd);
  // after a failed write the stream has a hole: every later write and finish() fail too
  let failed: Error | null = null;
  return {
    description: `file ${file}`,
    // --force over a file: the stream went to a temporary name, the file is as it was
    kept: () => (st && !device ? `the existing file ${file} was kept, not replaced` : null),
    async write(data) {
      if (failed) throw failed;
      // on libuv's threads: the dump reads and compresses the next records meanwhile
      try {
        if (appender) await appender.append(data);
        else await writeFully(fd, data, data.length, offset);
      } catch (err) {
        failed = fromSystemError(err, file, 'writing the stream');
        throw failed;
      }
      offset += data.length;
      if (!appender?.direct) writeback.wrote(data.length);
    },
    async finish(): Promise<MediaPosition> {
      if (failed) throw failed;
      try {
        if (appender) {
          await appender.finish();
          await appender.close();
        }
        await writeback.done();
        fsyncUnlessUnsupported(fd);
        fs.closeSync(fd);
        closed = true;
        if (!device) {
          fs.renameSync(partial, into);
          const dfd = fs.openSync(path.dirname(into), 'r');
          fs.fsyncSync(dfd);
          fs.closeSync(dfd);
        }
      } catch (err) {
        throw fromSystemError(err, file, 'finishing the stream');
      }
      return { kind: 'file', location: path.resolve(file) };
    },
    async abort() {
      await appender?.close().catch(() => undefined);
      await writeback.done().catch(() => undefined);
      if (!closed) {
        try {
          fs.closeSync(fd);
        } catch {
          /* closed */
        }
      }
      if (!device) fs.rmSync(partial, { force: true });
    },
  };
}

/** fsync, except where the file cannot be synced (a character device such as /dev/null). */
export function fsyncUnlessUnsupported(fd: number): void {
  try {
    fs.fsyncSync(fd);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EROFS') throw err;
  }
}

/** A file's bytes, read ahead into page-aligned buffers the consumer may give back (see read-ahead.ts). */
export function fileBytes(file: string): Pick<SourceStream, 'bytes' | 'recycle'> {
  let fh: fs.promises.FileHandle | null = null;
  const read: ReadInto = async (buf, at, length) => {
    try {
      fh ??= await fs.promises.open(file, 'r');
    } catch (err) {
      throw fromSystemError(err, file, 'opening the stream');
    }
    try {
      return (await fh.read(buf, at, length, null)).bytesRead;
    } catch (err) {
      throw fromSystemError(err, file, 'reading the stream');
    }
  };
  return readAheadBytes(read, async () => {
    await fh?.close();
  });
}

/** A file's bytes, in buffers of its own (for a consumer that gives none back). */
export function readFileBytes(file: string): AsyncIterable<Buffer> {
  return fileBytes(file).bytes;
}

export function fileSource(file: string): StreamSource {
  try {
    if (fs.statSync(file).isDirectory()) throw new InvalidInputError(`${file}: is a directory`, directoryHint(file));
  } catch (err) {
    throw fromSystemError(err, file, 'opening the stream');
  }
  return {
    description: `file ${file}`,
    rereadable: true,
    async *streams(): AsyncGenerator<SourceStream> {
      yield { name: `file ${file}`, position: { kind: 'file', location: path.resolve(file) }, ...fileBytes(file) };
    },
  };
}

/** What a directory given where a stream belongs probably is, and how to give it. */
function directoryHint(dir: string): string {
  let names: string[] = [];
  try {
    names = fs.readdirSync(dir);
  } catch {
    // unreadable: the generic hint
  }
  if (names.includes('protect.json')) return `a protection destination: restore it as of a time with: imgstream restore --to NEW --as-of TIME --from ${dir}, where TIME latest is its newest recovery point`;
  if (names.some((n) => /^file\d{4,}\.tar$/.test(n))) return `a tape directory: read it as tape:${dir}`;
  return `give the stream files in it one by one (${path.join(dir, '*')}), or tape:DIR for a tape directory`;
}
