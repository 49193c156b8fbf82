// Renders library progress: a bar on stderr when it is a terminal, nothing otherwise
// (piped, --json or --quiet).
import cliProgress from 'cli-progress';
import { formatSize } from '../../src/core/size.js';
import { noProgress, type Progress } from '../../src/core/progress.js';

export function progressFor(enabled: boolean): Progress {
  if (!enabled || !process.stderr.isTTY) return noProgress;
  let bar: cliProgress.SingleBar | null = null;
  let unit: 'bytes' | 'blocks' = 'bytes';
  let label = '';
  let total = 0;
  const fmt = (n: number) => (unit === 'bytes' ? formatSize(n) : String(n));
  return {
    start(l, t, u) {
      label = l;
      total = t;
      unit = u;
      bar = new cliProgress.SingleBar(
        {
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: true,
          format: (options, params) => {
            const width = options.barsize ?? 30;
            const frac = total > 0 ? Math.min(1, params.value / total) : 0;
            const filled = Math.round(frac * width);
            const bar = total > 0 ? `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ` : '';
            const eta = total > 0 && params.eta > 0 && Number.isFinite(params.eta) ? ` eta ${params.eta}s` : '';
            return `${label} ${bar}${fmt(params.value)}${total > 0 ? ` / ${fmt(total)}` : ''}${eta}`;
          },
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(t, 0);
    },
    update(done) {
      bar?.update(done);
    },
    stop() {
      bar?.stop();
      bar = null;
    },
  };
}
