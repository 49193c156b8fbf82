// The SIMD word loops of bit-kernel.wat, over a WebAssembly memory of their own. A
// storage image is evaluated by copying each plane chunk into this memory and combining
// it there, 128 bits per instruction; counting set bits and runs uses the hardware
// population count. In JavaScript the same loops cost about three times as much, most
// of it in counting (a dozen shifts and masks per 32-bit word), and they only reach that
// speed after V8 has optimized them, which a one-shot command never waits for.
import { WASM_PAGE_BYTES, wasm } from '../core/webassembly.js';
import { BIT_KERNEL_WASM } from './bit-kernel-wasm.js';

interface KernelExports {
  or(d: number, s: number, n: number): void;
  and(d: number, s: number, n: number): void;
  andnot(d: number, s: number, n: number): void;
  any(p: number, n: number): number;
  tally(p: number, n: number, carry: number): number;
  blocks(): number;
  extents(): number;
}

/** Lengths the loops handle: multiples of one 4 KiB page of tally()'s 16-bit counters. */
export const KERNEL_UNIT_BYTES = 4096;

let compiled: object | undefined;

/** `slots` areas of `slotBytes` each (a multiple of KERNEL_UNIT_BYTES), addressed by index; every operation works on whole areas. */
export class BitKernel {
  private readonly k: KernelExports;
  private readonly words: Uint32Array;
  private readonly wordsPerSlot: number;

  constructor(readonly slots: number, readonly slotBytes: number) {
    if (slotBytes <= 0 || slotBytes % KERNEL_UNIT_BYTES !== 0) throw new Error(`kernel slots of ${slotBytes} bytes: not a multiple of ${KERNEL_UNIT_BYTES}`);
    compiled ??= new wasm.Module(Buffer.from(BIT_KERNEL_WASM, 'base64'));
    const pages = Math.ceil((slots * slotBytes) / WASM_PAGE_BYTES);
    // a fixed size: the memory never grows, so views of it stay valid
    const memory = new wasm.Memory({ initial: pages, maximum: pages });
    this.k = new wasm.Instance(compiled, { env: { memory } }).exports as KernelExports;
    this.words = new Uint32Array(memory.buffer);
    this.wordsPerSlot = slotBytes / 4;
  }

  /** The words of a slot: a view that stays valid, and sees every later change. */
  view(slot: number): Uint32Array {
    return this.words.subarray(slot * this.wordsPerSlot, (slot + 1) * this.wordsPerSlot);
  }

  /** Copies words (slotBytes / 4 of them) into a slot. */
  load(slot: number, words: Uint32Array): void {
    this.words.set(words, slot * this.wordsPerSlot);
  }

  or(d: number, s: number): void {
    this.k.or(d * this.slotBytes, s * this.slotBytes, this.slotBytes);
  }

  and(d: number, s: number): void {
    this.k.and(d * this.slotBytes, s * this.slotBytes, this.slotBytes);
  }

  /** slot d &= ~slot s */
  andNot(d: number, s: number): void {
    this.k.andnot(d * this.slotBytes, s * this.slotBytes, this.slotBytes);
  }

  any(slot: number): boolean {
    return this.k.any(slot * this.slotBytes, this.slotBytes) !== 0;
  }

  /**
   * Adds a slot's set bits and runs to blocks and extents; true when it has any. `carry`
   * is the bit just before the slot's first one: when set, a run starting there continues
   * one already counted.
   */
  tally(slot: number, carry: boolean): boolean {
    return this.k.tally(slot * this.slotBytes, this.slotBytes, carry ? 1 : 0) !== 0;
  }

  /** Set bits tallied so far. */
  get blocks(): number {
    return this.k.blocks();
  }

  /** Runs of set bits tallied so far (run starts not preceded by a carry). */
  get extents(): number {
    return this.k.extents();
  }
}
