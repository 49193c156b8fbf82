// Build steps run by `npm run build` after tsc: cli-bundle.ts puts the CLI into one CommonJS
// module and writes a V8 code cache for it (a command starts in about 40% less CPU time
// than from some 250 separate ES modules; src/cli/load.ts is what loads them);
// up-to-date.ts records what the build was made from, so `npm test` builds only when a
// source changed.
export { bundleCli, writeCodeCache, BUNDLE_PATH, CODE_CACHE_PATH } from './cli-bundle.js';
export { inputsHash, upToDate } from './up-to-date.js';
