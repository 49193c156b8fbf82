// The exit code table as help text (one source: src/core/errors.ts).
import { EXIT_CODES, EXIT_INTERNAL } from '../../src/core/errors.js';

export function exitCodeLines(): string[] {
  const rows = [
    ['0', 'success'],
    [String(EXIT_INTERNAL), 'internal error (a bug: please report it)'],
    ...Object.entries(EXIT_CODES).map(([code, v]) => [String(v.exit), `${code}: ${v.meaning}`]),
  ];
  return rows.map(([n, m]) => `${n.padStart(3)}  ${m}`);
}
