// The built-in demo run by `imgstream demo`: exercises the volume library end to end.
// May import ../volume, ../errors, ../progress.
export * from './demo.js';
