import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { errorOfCode, ImgstreamError } from '../../src/core/errors.js';
import { openState, parseRate } from '../_cli/mirror-flags.js';
import { compressionFor, peerDestination, transferFlags } from '../_cli/mirror-peer.js';
import { mirrorLoop, parseSchedule } from '../../src/mirror/run.js';
import { runLines } from '../_cli/mirror-report.js';
import { onStopSignals } from '../_cli/stop-signals.js';
import { OUTPUT_FAILED, stopOnOutputFailure } from '../../src/cli/output-failure.js';

export default class MirrorStart extends ImgstreamCommand {
  static override summary = 'Run mirror updates on a schedule, in the foreground.';
  static override description = `Runs "mirror update" now and then at every tick of the schedule: --every DURATION (30s, 5m, 2h, 1d) after the end of the previous run, or --cron EXPR (five crontab fields, minute hour day-of-month month day-of-week, in local time; each * or a value, a list a,b, a range a-b or a step */n; months and days of the week also by name, JAN, MON). A malformed --every or --cron, or a crontab that never runs (0 0 30 2 *), is refused before anything runs, in one line naming the value and the field that is wrong (exit code 4). A failed update is logged and retried at the next tick (an interrupted transfer resumes); the loop never ends on an error. SIGINT or SIGTERM cuts a running transfer at once (the destination stays at its previous state, the next start resumes it), logs that it stopped and exits 0; a second signal while it stops (a quarter second or more after the first: one delivered twice, as timeout does, counts once) ends it at once. A write to stdout that fails (its reader gone away, as with | head; a full disk) stops it the same way, and it exits 10 with one line ("writing the output: EPIPE: ... (so it stopped, as on SIGTERM)"). One line per transfer on stdout (one JSON object per line with --json: "update" with its transfers, "failed", "stopped", and "finished" with the runs and failures when the loop ends). On stderr, each line after the time it was written: what the loop does ("mirroring VOL to DEST every 5m" when it starts, "stopped by SIGTERM ..." when it stops), and each failed update ("imgstream: update failed (attempt N): ERROR", as errors read): fit for a systemd service (see the README). With --max-runs N it ends after N updates: with exit 0 when the last one succeeded, else with the last one's error and its exit code (a wrapper sees that nothing was mirrored then).`;
  static override examples = [
    '<%= config.bin %> mirror start vm.vol --to peer://backup.example:7411/vm --token-file /etc/imgstream/token --tls-ca /etc/imgstream/ca.pem --every 5m',
    '<%= config.bin %> mirror start vm.vol --to peer://10.0.0.2:7411/vm --token-file token --plain --cron "*/15 8-18 * * 1-5" --limit-rate 20M',
  ];
  static override args = { volume: Args.string({ description: 'Source volume.', required: true }) };
  static override flags = {
    ...transferFlags,
    every: Flags.string({ helpValue: 'DURATION', description: 'Time between the end of one update and the next: 30s, 5m, 2h, 1d.', exclusive: ['cron'] }),
    cron: Flags.string({ helpValue: 'EXPR', description: 'Crontab schedule (five fields: minute hour day-of-month month day-of-week), e.g. "*/5 * * * *".', exclusive: ['every'] }),
    'max-runs': Flags.integer({ helpValue: 'N', description: 'Stop after N updates (default: run until stopped); exits with the last update\'s error when it failed.', min: 1 }),
  };

  async run() {
    const { args, flags } = await this.parse(MirrorStart);
    const schedule = parseSchedule(flags.every, flags.cron);
    const dest = peerDestination(flags.to, flags);
    dest.check?.(); // refused in one line, before the loop is announced
    const limitRate = parseRate(flags['limit-rate']);
    const stop = new AbortController();
    const off = onStopSignals((sig) => stop.abort(sig), ['SIGINT', 'SIGTERM']);
    // its log's reader gone away (| head), or its disk full: stopped as by SIGTERM, then exit 10 (main)
    const offOutput = stopOnOutputFailure(() => stop.abort(OUTPUT_FAILED));
    const json = this.jsonEnabled();
    const line = (o: Record<string, unknown>, text: string) => process.stdout.write(json ? `${JSON.stringify({ time: new Date().toISOString(), ...o })}\n` : `${new Date().toISOString()} ${text}\n`);
    // the loop's own log on stderr: information reads as the log lines on stdout do (a time,
    // then what happened), never "imgstream: ...", which is how errors read
    const note = (text: string) => process.stderr.write(`${new Date().toISOString()} ${text}\n`);
    try {
      note(`mirroring ${args.volume} to ${dest.spec} ${schedule.describe}`);
      const r = await mirrorLoop(args.volume, dest, schedule, { limitRate, state: openState(flags.state), signal: stop.signal, maxRuns: flags['max-runs'], compress: compressionFor(flags.compress, dest) }, {
        ran: (x) => line({ event: 'update', ...x }, runLines(args.volume, x).join(`\n${new Date().toISOString()} `)),
        failed: (err, attempt) => {
          process.stderr.write(`${new Date().toISOString()} imgstream: update failed (attempt ${attempt}): ${err.message}\n`);
          if (json) line({ event: 'failed', attempt, error: err.message }, '');
        },
        stopped: (err) => {
          // a stop is no failure (exit 0): the transfer it cut resumes on the next update
          note(err ? `${err.message}: ${err instanceof ImgstreamError && err.hint ? err.hint : 'it resumes on the next update'}` : `stopped by ${String(stop.signal.reason)}`);
          if (json) line({ event: 'stopped', signal: String(stop.signal.reason), error: err?.message ?? null }, '');
        },
        waiting: () => {},
      });
      const summary = { volume: args.volume, destination: dest.spec, runs: r.runs, failures: r.failures };
      // with --json the log stays JSON lines: the summary is one more line, not a document
      if (json) line({ event: 'finished', ...summary }, '');
      // --max-runs ended on a failed update: a wrapper script must see that nothing was mirrored then
      if (r.lastError) {
        const e = r.lastError;
        throw errorOfCode(e instanceof ImgstreamError ? e.code : 'io', `${args.volume}: the last update to ${dest.spec} failed (${r.failures} of ${r.runs} update${r.runs === 1 ? '' : 's'} failed): ${e.message}`, e instanceof ImgstreamError ? e.hint : undefined);
      }
      if (!json) return summary;
    } finally {
      off();
      offOutput();
    }
  }
}
