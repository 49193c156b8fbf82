// Build steps run by `npm run build` after tsc: cli-bundle.ts puts the CLI into one CommonJS
// module and writes a V8 code cache for it (a command starts in about 40% less CPU time
// than from some 250 separate ES modules); src/cli/load.ts is what loads them.
export { bundleCli, writeCodeCache, BUNDLE_PATH, CODE_CACHE_PATH } from './cli-bundle.js';
