// How many random sequences a model test runs: its own default in CI, or
// IMGSTREAM_MODEL_RUNS to explore further (or replay fewer) without editing the test.

/** `IMGSTREAM_MODEL_RUNS` when it is a positive integer, else `fallback`. */
export function modelRuns(fallback: number): number {
  const n = Number(process.env.IMGSTREAM_MODEL_RUNS);
  return Number.isInteger(n) && n > 0 ? n : fallback;
}
