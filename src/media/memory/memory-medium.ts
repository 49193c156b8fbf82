// The in-memory twin of every medium: a list of streams (like the files of a tape). For
// tests of everything that writes or reads streams.
import type { MediaPosition, SourceStream, StreamSource, StreamTarget } from '../medium.js';

export class MemoryMedium {
  /** Complete streams, in the order they were finished. */
  readonly streams: Buffer[] = [];
  /** Bytes of the stream being written (visible to tests that simulate a crash). */
  partial: Buffer[] = [];

  target(): StreamTarget {
    const parts: Buffer[] = [];
    this.partial = parts;
    return {
      description: 'memory',
      write: async (data) => {
        parts.push(Buffer.from(data));
      },
      finish: async (): Promise<MediaPosition> => {
        this.streams.push(Buffer.concat(parts));
        return { kind: 'memory', location: 'memory', tapeFile: this.streams.length };
      },
      abort: async () => {
        parts.length = 0;
      },
    };
  }

  source(only?: number): StreamSource {
    const list = only === undefined ? this.streams.map((b, i) => [b, i] as const) : [[this.streams[only - 1], only - 1] as const];
    return {
      description: 'memory',
      async *streams(): AsyncGenerator<SourceStream> {
        for (const [b, i] of list) {
          yield {
            name: `memory stream ${i + 1}`,
            position: { kind: 'memory', location: 'memory', tapeFile: i + 1 },
            bytes: (async function* () {
              for (let o = 0; o < b.length; o += 65536) yield b.subarray(o, Math.min(b.length, o + 65536));
            })(),
          };
        }
      },
    };
  }
}
