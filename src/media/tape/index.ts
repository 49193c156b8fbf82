// Tapes: dumps as tar archives in fixed records, one tape file per dump, spanning tapes.
export * from './tape-target.js';
export * from './tape-source.js';
export * from './tape-spec.js';
export { DEFAULT_RECORD_SIZE, DEFAULT_PART_BYTES, type TapeLabel } from './tape-format.js';
