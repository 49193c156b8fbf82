// One line of the benchmark table: a figure measured against a baseline taken in the same
// run, their ratio, and the target it is judged by. A MISS is reported, not fatal; a
// CRASH (the benchmark threw, or the product gave a wrong answer) fails the run; a SKIP
// says why a figure could not be measured here (the baseline's tool is missing).
import { median } from './measure.js';

export type Unit = 's' | 'ms' | 'MB/s' | 'MiB';

export interface Target {
  /** What the target constrains: the ratio, or the measured figure itself (a limit). */
  on: 'ratio' | 'measured';
  op: '<' | '<=' | '>=';
  value: number;
}

export type Verdict = 'PASS' | 'MISS' | 'INFO' | 'CRASH' | 'SKIP';

export interface BenchRow {
  name: string;
  /** What was measured and against what, in one line. */
  what: string;
  unit: Unit;
  measured: number | null;
  baseline: number | null;
  /** measured / baseline (for throughputs: how much of the baseline's speed). */
  ratio: number | null;
  target: Target | null;
  verdict: Verdict;
  /** Every sample taken, in the unit above, in the order taken. */
  samples: { measured: number[]; baseline: number[] };
  error?: string;
  /** Why a SKIP row has no baseline. */
  skipped?: string;
}

export function judge(target: Target | null, measured: number, ratio: number): Verdict {
  if (!target) return 'INFO';
  const v = target.on === 'ratio' ? ratio : measured;
  const ok = target.op === '<' ? v < target.value : target.op === '<=' ? v <= target.value : v >= target.value;
  return ok ? 'PASS' : 'MISS';
}

export function row(
  name: string,
  what: string,
  unit: Unit,
  samples: { measured: number[]; baseline: number[] },
  measured: number,
  baseline: number,
  target: Target | null,
): BenchRow {
  const ratio = measured / baseline;
  return { name, what, unit, measured, baseline, ratio, target, verdict: judge(target, measured, ratio), samples };
}

export function crashed(name: string, err: unknown): BenchRow {
  const error = err instanceof Error ? err.message : String(err);
  return { name, what: 'crashed', unit: 's', measured: null, baseline: null, ratio: null, target: null, verdict: 'CRASH', samples: { measured: [], baseline: [] }, error };
}

/** A row whose baseline could not be measured: the product's own figure (if any) is kept, without a verdict. */
export function skipped(name: string, what: string, unit: Unit, why: string, measured: number[] = []): BenchRow {
  const m = measured.length ? median(measured) : null;
  return { name, what, unit, measured: m, baseline: null, ratio: null, target: null, verdict: 'SKIP', samples: { measured, baseline: [] }, skipped: why };
}

export function formatTarget(t: Target | null, unit: Unit): string {
  if (!t) return '-';
  return t.on === 'ratio' ? `ratio ${t.op} ${t.value}` : `${t.op} ${t.value} ${unit}`;
}

function figure(v: number | null, unit: Unit): string {
  if (v === null) return '-';
  if (unit === 'MB/s') return `${v.toFixed(0)} MB/s`;
  if (unit === 'MiB') return `${v.toFixed(1)} MiB`;
  if (unit === 'ms') return `${v < 10 ? v.toFixed(2) : v.toFixed(1)} ms`;
  return v < 1 ? `${(v * 1000).toFixed(1)} ms` : `${v.toFixed(2)} s`;
}

/** The table printed at the end of `npm run bench`. */
export function formatTable(rows: BenchRow[]): string {
  const head = ['name', 'measured', 'baseline', 'ratio', 'target', 'result'];
  const cells = rows.map((r) => [
    r.name,
    figure(r.measured, r.unit),
    figure(r.baseline, r.unit),
    r.ratio === null ? '-' : r.ratio.toFixed(3),
    formatTarget(r.target, r.unit),
    r.verdict,
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((s, i) => (i === 0 || i === 4 ? s.padEnd(widths[i]) : s.padStart(widths[i]))).join('  ');
  const out = [line(head), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)];
  for (const r of rows) {
    if (r.verdict === 'CRASH') {
      out.push(`  ${r.name}: CRASHED: ${r.error}`);
      continue;
    }
    if (r.verdict === 'SKIP') out.push(`  ${r.name}: skipped: ${r.skipped}`);
    const list = (xs: number[]) => xs.map((x) => figure(x, r.unit)).join(', ');
    out.push(`  ${r.name}: ${r.what}`);
    out.push(`    samples: measured ${list(r.samples.measured)}; baseline ${list(r.samples.baseline)}`);
  }
  return out.join('\n');
}
