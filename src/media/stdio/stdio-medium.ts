// A stream on stdout (dump ... --to -) or stdin (restore --from -), for pipes such as
// `imgstream dump ... --to - | ssh host imgstream restore --from - --to VOL`. A pipe
// cannot take bytes back: a dump that fails midway leaves the reader a stream without a
// trailer, which every reader reports as incomplete.
import { InvalidInputError, IoError } from '../../errors.js';
import type { MediaPosition, SourceStream, StreamSource, StreamTarget } from '../medium.js';

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
      if (failed) throw new IoError(`stdout: ${failed.message}`, 'the reading end of the pipe went away');
      // settle only once the bytes left: the caller reuses the buffer after this
      await new Promise<void>((resolve) => out.write(data, () => resolve()));
      if (failed) throw new IoError(`stdout: ${(failed as Error).message}`, 'the reading end of the pipe went away');
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
      yield { name: 'stdin', position: { kind: 'stdin', location: '-' }, bytes: process.stdin as AsyncIterable<Buffer> };
    },
  };
}
