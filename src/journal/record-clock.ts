// The time a journal record is stamped with.

/**
 * Milliseconds since the epoch, on the wall clock clients and restore requests use
 * (whole milliseconds: a record is stamped no later than its reply leaves), never going
 * back within a process.
 */
let lastNow = 0;
export function now(): number {
  const t = Date.now();
  lastNow = t > lastNow ? t : lastNow;
  return lastNow;
}
