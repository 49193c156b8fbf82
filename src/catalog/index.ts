// The dump catalog: records of complete dumps, kept apart from the streams, each checked
// field by field when read. May import ../errors, ../media (positions),
// ../volume/volume-lock, ../fs (temporary names beside the catalog, durable renames).
export * from './catalog.js';
export * from './record-check.js';
export * from './as-of.js';
export * from './backup-logs.js';
export * from './copies.js';
export * from './record-place.js';
export * from './next-base.js';
