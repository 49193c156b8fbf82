// Durations on the command line (protect's --interval and --keep) and in what commands
// print. A malformed value is "invalid-input" (4), as every other malformed value is.
import { InvalidInputError } from '../../src/core/errors.js';

const UNIT = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** "250ms", "1s", "5m", "24h", "7d" in milliseconds (at least `min`). */
export function parseDuration(text: string, flag: string, min: number): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  const ms = m ? Number(m[1]) * UNIT[m[2] as keyof typeof UNIT] : NaN;
  if (!(ms >= min)) throw new InvalidInputError(`invalid ${flag} "${text}"`, `use a duration of at least ${formatDuration(min)}, e.g. 1s, 5m, 24h, 7d`);
  return ms;
}

/** 250ms, 45s, 30m, 24.0h: as a person reads it. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = Math.round(ms / 1000);
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  return `${(s / 3600).toFixed(1)}h`;
}
