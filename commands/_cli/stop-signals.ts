// SIGINT, SIGHUP and SIGTERM for commands that clean up when stopped (dump): the first signal
// fires an AbortSignal whose reason is the signal's name, and the operation undoes what
// it made and ends with exit 130 (SIGINT), 129 (SIGHUP) or 143 (SIGTERM); a second signal while it
// cleans up ends the process at once, as kill -9 would.
import { EXIT_CODES } from '../../src/core/errors.js';

export async function stoppableBySignals<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const onSignal = (sig: NodeJS.Signals): void => {
    if (controller.signal.aborted) process.exit(sig === 'SIGINT' ? EXIT_CODES.interrupted.exit : sig === 'SIGHUP' ? EXIT_CODES.hangup.exit : EXIT_CODES.terminated.exit);
    controller.abort(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await work(controller.signal);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onSignal);
    process.off('SIGTERM', onSignal);
    // stopped: once the error is printed, a write still pending on a pipe nobody reads must not keep the process alive
    if (controller.signal.aborted) setTimeout(() => process.exit(), 500).unref();
  }
}
