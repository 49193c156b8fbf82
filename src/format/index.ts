// Pure byte codecs of everything imgstream writes: values in, bytes out and back, no I/O.
// May import node:zlib and @node-rs/crc32 (through ./crc32.js) and ../errors.js only.
export * from './volume-root.js';
export * from './journal-index.js';
export * from './snapshot-entry.js';
