// Orders of the blocks in a stream. "vbn" (the default) sends blocks in VBN order: one
// sequential pass, best for disk and tape. "interleave:N" cuts the VBN space into N equal
// stripes and sends one record (about 1 MiB) from each in turn, so the reads spread over
// the devices a volume is striped across; it costs N passes over the planes. Restore
// writes every block at its VBN whatever the order.
import { InvalidInputError } from '../core/errors.js';

export interface StreamOrder {
  name: string;
  /** Chunk ranges [from, to) walked in turn. */
  stripes(chunks: number): Array<[number, number]>;
}

export function parseOrder(text: string): StreamOrder {
  if (text === 'vbn') return { name: 'vbn', stripes: (chunks) => [[0, chunks]] };
  const m = /^interleave:(\d+)$/.exec(text);
  if (m) {
    const n = Number(m[1]);
    if (n < 2 || n > 64) throw new InvalidInputError(`invalid order "${text}": use 2 to 64 stripes`);
    return {
      name: `interleave:${n}`,
      stripes: (chunks) => {
        const size = Math.ceil(chunks / n);
        return Array.from({ length: n }, (_, i) => [i * size, Math.min(chunks, (i + 1) * size)] as [number, number]).filter(([a, b]) => a < b);
      },
    };
  }
  throw new InvalidInputError(`invalid order "${text}"`, 'use vbn (the default) or interleave:N');
}
