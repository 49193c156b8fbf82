// What every benchmark gets: the work directory, the cache mode, a log for progress
// (stderr, so stdout stays the table and the JSON line), notes for the report, and
// fixtures shared between benchmarks (built once, on first use).
import type { CacheMode } from './cache-state.js';

export class BenchContext {
  readonly notes: string[] = [];
  private readonly fixtures = new Map<string, Promise<unknown>>();
  private readonly t0 = Date.now();

  constructor(readonly work: string, readonly cache: CacheMode) {}

  log(msg: string): void {
    process.stderr.write(`[bench ${((Date.now() - this.t0) / 1000).toFixed(1).padStart(6)}s] ${msg}\n`);
  }

  note(msg: string): void {
    this.notes.push(msg);
  }

  /** The fixture named key, built by make() the first time it is asked for. */
  once<T>(key: string, make: () => Promise<T>): Promise<T> {
    let p = this.fixtures.get(key) as Promise<T> | undefined;
    if (!p) this.fixtures.set(key, (p = make()));
    return p;
  }

  /** Drops the fixture named key (its owner has removed its files); asking for it again builds it anew. */
  forget(key: string): void {
    this.fixtures.delete(key);
  }
}
