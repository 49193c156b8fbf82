// The built-in demo run by `imgstream demo`: the main jobs end to end (volumes, storage
// images, dumps, verify, restore, a local mirror), each result checked byte for byte.
// May import ../volume, ../stream, ../media, ../mirror, ../catalog, ../errors, ../progress.
export * from './demo.js';
export * from './jobs.js';
