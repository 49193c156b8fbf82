// What a storage image is evaluated over: the planes of one volume, read one chunk at a
// time. A chunk is the bits of one plane block (blockSize * 8 VBNs), so evaluating an
// expression is a single pass over the chunks of the planes it names, with memory
// bounded by a few chunks whatever the volume size.

export interface PlaneRef {
  /** Opaque id passed back to chunk(). */
  readonly id: number;
  /** True for snapshot planes: only those may be subtracted. */
  readonly snapshot: boolean;
  readonly name: string;
}

export interface PlaneSource {
  /** VBN count N: valid VBNs are 0..N-1. */
  readonly nblocks: number;
  /** Bytes per block: image bytes = blocks * blockSize. */
  readonly blockSize: number;
  /** Uint32 words in one chunk (blockSize / 4); bit b of word w is VBN c*wordsPerChunk*32 + w*32 + b. */
  readonly wordsPerChunk: number;
  /** Number of chunks: ceil(nblocks / (wordsPerChunk * 32)). */
  readonly chunks: number;
  /** The plane a name denotes ('active' or a snapshot name), or undefined. */
  resolve(name: string): PlaneRef | undefined;
  /** Names a user could have meant (for "unknown plane" hints). */
  names(): string[];
  /**
   * Words of chunk c of plane id. Bits at VBNs >= nblocks are zero. The caller must not
   * modify the array, and it is only valid until the next call to chunk().
   */
  chunk(id: number, c: number): Uint32Array;
}
