// Test-only knob: IMGSTREAM_TEST_SOURCE_RATE (bytes per second, e.g. "40M") slows every
// dump's reads of its volume to that rate, standing in for a slow disk in the benchmark of
// multiplexed tape dumps. Unset (always, outside tests): no pacing at all.
import { parseSize } from '../core/size.js';

/** Waits as long as needed for `done` bytes read since the start to stay within the rate; null when no rate is set. */
export function sourcePacer(): ((done: number) => Promise<void>) | null {
  const text = process.env.IMGSTREAM_TEST_SOURCE_RATE;
  if (!text) return null;
  const rate = parseSize(text, 'IMGSTREAM_TEST_SOURCE_RATE');
  if (rate <= 0) return null;
  const t0 = performance.now();
  return async (done: number) => {
    const due = t0 + (done / rate) * 1000;
    const wait = due - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
  };
}
