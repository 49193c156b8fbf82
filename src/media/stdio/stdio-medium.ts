// A stream on stdout (dump ... --to -) or stdin (restore --from -), for pipes such as
// `imgstream dump ... --to - | ssh host imgstream restore --from - --to VOL`. A pipe
// cannot take bytes back: a dump that fails midway leaves the reader a stream without a
// trailer, which every reader reports as incomplete.
import fs from 'node:fs';
import { InvalidInputError, fromSystemError } from '../../core/errors.js';
import { readAheadBytes, type ReadInto } from '../read-ahead.js';
import type { MediaPosition, SourceStream, StreamSource, StreamTarget } from '../medium.js';
import { stdoutFailure } from '../../fs/stdout-failure.js';

export function stdoutTarget(): StreamTarget {
  if (process.stdout.isTTY) throw new InvalidInputError('refusing to write a stream to a terminal', 'redirect stdout to a file or a pipe, or give --to FILE');
  const out = process.stdout;
  let failed: Error | null = null;
  out.on('error', (err) => {
    failed = err;
  });
  return {
    description: 'stdout',
    async write(data) {
      if (failed) throw stdoutFailure(failed);
      // settle only once the bytes left: the caller reuses the buffer after this
      await new Promise<void>((resolve) => out.write(data, () => resolve()));
      if (failed) throw stdoutFailure(failed);
    },
    async finish(): Promise<MediaPosition> {
      await new Promise<void>((resolve) => out.write('', () => resolve()));
      return { kind: 'stdout', location: '-' };
    },
    async abort() {},
  };
}

export function stdinSource(): StreamSource {
  if (process.stdin.isTTY) throw new InvalidInputError('refusing to read a stream from a terminal', 'pipe a stream in, or give --from FILE');
  return {
    description: 'stdin',
    async *streams(): AsyncGenerator<SourceStream> {
      yield { name: 'stdin', position: { kind: 'stdin', location: '-' }, ...(isRegularFile(0) ? fdBytes(0) : { bytes: process.stdin as AsyncIterable<Buffer> }) };
    },
  };
}

function isRegularFile(fd: number): boolean {
  try {
    return fs.fstatSync(fd).isFile();
  } catch {
    return false;
  }
}

/**
 * stdin redirected from a file (`restore --from - < vm.l0`): read like a file, 4 MiB at a
 * time into buffers given back (see read-ahead.ts), instead of process.stdin's 64 KiB
 * Buffers. A pipe stays with process.stdin: read(2) on a pipe returns as soon as a few
 * bytes are there, and reading it that way on the thread pool was slower (measured: 9-12
 * s for 3.9 GB from `cat`, against 6.5-7 s).
 */
function fdBytes(fd: number): Pick<SourceStream, 'bytes' | 'recycle'> {
  const read: ReadInto = (buf, at, length) =>
    new Promise<number>((resolve, reject) => fs.read(fd, buf, at, length, null, (err, n) => (err ? reject(fromSystemError(err, 'stdin', 'reading the stream')) : resolve(n))));
  return readAheadBytes(read, async () => {});
}
