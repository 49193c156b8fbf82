// The dump catalog: records of complete dumps, kept apart from the streams. May import
// ../errors, ../media (positions), ../volume/volume-lock.
export * from './catalog.js';
export * from './as-of.js';
export * from './backup-logs.js';
