// SIGINT, SIGHUP and SIGTERM for commands that clean up when stopped (dump): the first signal
// fires an AbortSignal whose reason is the signal's name, and the operation undoes what
// it made and ends with exit 130 (SIGINT), 129 (SIGHUP) or 143 (SIGTERM); a second signal while it
// cleans up ends the process at once, as kill -9 would. A second one within REPEAT_MS of the
// first is the same stop delivered twice, not a user insisting: `timeout` signals its
// command and then its whole process group (the command again), and a kill of a process
// group or cgroup reaches a process that its parent signals too.
import { EXIT_CODES } from '../../src/core/errors.js';
import { stopSignalsHandledByCaller } from '../../src/fs/stop-cleanup.js';

/** Signals this soon after the first are taken as the same one. */
export const REPEAT_MS = 250;

const STOP_SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGHUP', 'SIGTERM'];

/**
 * Calls `stop` on the first of `signals`; a later one, past REPEAT_MS, exits at once
 * (130, 129 or 143). Returns what takes the handlers off again.
 */
export function onStopSignals(stop: (sig: NodeJS.Signals) => void, signals: NodeJS.Signals[] = STOP_SIGNALS): () => void {
  let first: number | null = null;
  const onSignal = (sig: NodeJS.Signals): void => {
    if (first !== null) {
      if (performance.now() - first < REPEAT_MS) return;
      process.exit(sig === 'SIGINT' ? EXIT_CODES.interrupted.exit : sig === 'SIGHUP' ? EXIT_CODES.hangup.exit : EXIT_CODES.terminated.exit);
    }
    first = performance.now();
    stop(sig);
  };
  for (const s of signals) process.on(s, onSignal);
  const released = stopSignalsHandledByCaller();
  return () => {
    for (const s of signals) process.off(s, onSignal);
    released();
  };
}

/**
 * Runs `work` with an AbortSignal the first stop signal fires. `late`: told the signal when
 * `work` completed although it fired (it came past the point where the work stops, such as
 * a dump writing its trailer), for the command to say so.
 */
export async function stoppableBySignals<T>(work: (signal: AbortSignal) => Promise<T>, late?: (sig: NodeJS.Signals) => void): Promise<T> {
  const controller = new AbortController();
  const off = onStopSignals((sig) => controller.abort(sig));
  try {
    const result = await work(controller.signal);
    // a signal that came during the work's last synchronous steps is still queued: let it in
    // (the next turn of the event loop reads it: immediates run before, so two of them)
    for (let i = 0; i < 2; i++) await new Promise<void>((resolve) => setImmediate(resolve));
    if (controller.signal.aborted) late?.(controller.signal.reason as NodeJS.Signals);
    return result;
  } finally {
    off();
    // stopped: once the error is printed, a write still pending on a pipe nobody reads must not keep the process alive
    if (controller.signal.aborted) setTimeout(() => process.exit(), 500).unref();
  }
}

/** The line (on stderr, not an error: exit 0) of a command a stop signal reached too late to stop it: it completed all the same. */
export function lateStopLine(sig: NodeJS.Signals, what: string, why: string, recorded = false): string {
  return `${sig} came too late to stop ${what} (${why}): it was finished${recorded ? ' and recorded' : ''}`;
}
