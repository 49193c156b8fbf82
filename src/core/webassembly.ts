// The part of the WebAssembly JavaScript API imgstream uses, typed (@types/node does not
// declare it): the SIMD kernel of storage images, and page-aligned memory for direct I/O.

export interface WasmMemory {
  readonly buffer: ArrayBuffer;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: unknown };
  Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory;
}

/** Bytes in a WebAssembly memory page. */
export const WASM_PAGE_BYTES = 65536;

export const wasm = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
