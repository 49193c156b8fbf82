// How the executable loads the CLI: the commands, oclif and the pure-JS dependencies are
// one CommonJS bundle (src/build/cli-bundle.ts writes it at build time), compiled from a V8
// code cache written beside it when there is one that fits (load.ts).
export { loadCli, type LoadedCli } from './load.js';
