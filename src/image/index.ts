// Storage images: the expression language over bit planes (`june5 + june4 - june3`), its
// checks against a volume's planes, and the single-pass evaluation that counts an image
// or walks it chunk by chunk in VBN order. Pure computation over a PlaneSource: this
// folder may import only ../errors.js, ../volume/snapshot-name.js, ../webassembly.js and
// node built-ins.

export type { PlaneRef, PlaneSource } from './plane-source.js';
export {
  type BinaryKind,
  type BinaryNode,
  type ImageExpression,
  type PlaneNode,
  MAX_NESTING,
  MAX_PLANES,
  OPERATOR_SYMBOL,
  formatExpression,
  parseExpression,
} from './expression.js';
export {
  type EvaluateOptions,
  type ImageChunk,
  type ImageProgress,
  type ResolvedExpression,
  type ResolvedPlane,
  type StorageImageSummary,
  PROGRESS_EVERY,
  evaluateImage,
  imageChunkReader,
  imageChunks,
  resolveExpression,
} from './storage-image.js';
export { forEachExtent, popcount32 } from './bit-words.js';
export { type MemoryPlane, type MemoryPlaneSourceSpec, MemoryPlaneSource } from './memory-plane-source.js';
