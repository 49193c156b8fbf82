// Stopping a long operation on SIGINT, SIGHUP or SIGTERM: the CLI turns the signal into an
// AbortSignal whose reason is the signal's name; the operation races its waits against
// it (a write to a pipe nobody reads never settles), cleans up what it made, and ends
// with stoppedBy()'s error (exit 130, 129 or 143). Only kill -9 leaves anything behind.
import type { StopSignal } from '../core/errors.js';

/** The signal that stopped the operation, or null while it runs. */
export function stopSignal(signal: AbortSignal | undefined): StopSignal | null {
  if (!signal?.aborted) return null;
  return signal.reason === 'SIGINT' || signal.reason === 'SIGHUP' ? signal.reason : 'SIGTERM';
}

/** Throws the abort reason once `signal` has fired (checked between steps that do not wait). */
export function throwIfStopped(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new Error(`stopped by ${String(signal.reason)}`);
}

/** `work`, unless `signal` fires first: then it rejects at once (work goes on, unobserved, and is left to fail). */
export async function untilStopped<T>(work: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (!signal) return work;
  throwIfStopped(signal);
  let onAbort = (): void => {};
  const stop = new Promise<never>((_resolve, reject) => {
    onAbort = () => reject(new Error(`stopped by ${String(signal.reason)}`));
    signal.addEventListener('abort', onAbort, { once: true });
  });
  try {
    return await Promise.race([work, stop]);
  } finally {
    signal.removeEventListener('abort', onAbort);
  }
}
