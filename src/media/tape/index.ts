// Tapes: dumps as tar archives in fixed records, one tape file per dump, spanning tapes;
// multiplexed tape files hold several dumps' streams interleaved, with a backup log.
export * from './tape-target.js';
export * from './tape-source.js';
export * from './tape-spec.js';
export { DEFAULT_RECORD_SIZE, DEFAULT_PART_BYTES, type TapeLabel } from './tape-format.js';
export { listTapeFiles } from './tape-directory.js';
export { MultiplexTapeWriter, LEFT_BEHIND, type MultiplexTapeOptions, type MultiplexOutcome, type MultiplexTapeFile } from './multiplex-target.js';
export { indexMultiplexFile, readMultiplexLabelAt, type ReadCounter } from './multiplex-reader.js';
export type { BackupLog, LogEntry, LogHeader, LogSource, SourceStatus, MultiplexLabel } from './multiplex-format.js';
