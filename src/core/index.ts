// What every part of the library shares and nothing else owns: the error classes and the
// one table of exit codes (errors.ts), how long operations report progress (progress.ts),
// sizes as users write them (size.ts), garbage collection for long-running data movers
// (gc-tuning.ts), the typed WebAssembly API (webassembly.ts), where a worker thread's
// script is (worker-script.ts), literal text inside a RegExp (regexp.ts), and mkdir -p
// that always returns (make-dirs.ts). Modules
// import the file they need; this index names the folder's public surface.
export * from './errors.js';
export { noProgress, type Progress } from './progress.js';
export { formatSize, parseSize } from './size.js';
export { tuneGcForStreaming } from './gc-tuning.js';
export { wasm, WASM_PAGE_BYTES, type WasmMemory } from './webassembly.js';
export { workerScript } from './worker-script.js';
export { escapeRegExp } from './regexp.js';
export { makeDirectories } from './make-dirs.js';
export { escapeControls } from './control-chars.js';
