// A write to stdout the operating system refused: a full disk (`> /dev/full`), or a pipe
// whose reader went away (`| head -0`, EPIPE). Node reports it as an 'error' event of
// process.stdout and the command goes on: oclif's listener threw it again (any code but
// EPIPE) as an uncaught exception, a stack trace and exit 1 after the work was done, and
// its flush() then waited for a 'drain' a failed stream never emits, so the process left
// with Node's exit code 13 (a top-level await that never settled). Here the first failure
// is kept; main() ends with one line and exit 10 (io) once the command is through. A
// long-running command (mirror start, protect, the servers) would never be through: it
// logged on to nobody until killed, so it is stopped as a stop signal stops it.
import { EXIT_CODES } from '../core/errors.js';
import { outputFailureText } from '../fs/stdout-failure.js';

let current: { failure?: NodeJS.ErrnoException; stopped?: boolean } | undefined;
let installed = false;
const stops = new Set<() => void>();

/** The reason a command stopped by stopOnOutputFailure() is given (its AbortSignal's, for its log). */
export const OUTPUT_FAILED = 'a failed write of its output';

/**
 * For a command that runs until stopped: calls `stop` (once) when a write to stdout fails,
 * its reader gone away or its disk full, as a stop signal would; main() then ends with the
 * one line and exit 10. Returns what takes `stop` off again.
 */
export function stopOnOutputFailure(stop: () => void): () => void {
  let called = false;
  const once = (): void => {
    if (called) return;
    called = true;
    if (current) current.stopped = true;
    stop();
  };
  stops.add(once);
  // (a write that failed before: its 'error' came already)
  if (current?.failure) queueMicrotask(() => stops.has(once) && once());
  return () => {
    stops.delete(once);
  };
}

/** Starts watching stdout for a failed write, for one run of main(). */
export function watchOutput(): void {
  current = {};
  if (installed) return;
  installed = true;
  // A listener that throws back the error it was given (oclif's, registered by each copy of
  // its Command module loaded, the help's too) would crash the process: that error is kept
  // to be reported at the end instead. Other listeners (a stream dump's) see it as before.
  const out = process.stdout;
  const emit = out.emit as (this: typeof out, event: string | symbol, ...args: unknown[]) => boolean;
  out.emit = function (this: typeof out, event: string | symbol, ...args: unknown[]): boolean {
    if (event !== 'error') return emit.call(this, event, ...args);
    const err = args[0] as NodeJS.ErrnoException;
    const first = current !== undefined && current.failure === undefined;
    if (current) current.failure ??= err;
    if (first) for (const stop of [...stops]) stop();
    for (const l of this.listeners('error')) {
      try {
        (l as (e: unknown) => void).call(this, err);
      } catch (thrown) {
        if (thrown !== err) throw thrown;
      }
    }
    return true;
  } as typeof out.emit;
}

/** Settles once what was written to stdout left, or stdout failed or closed. */
export async function outputDrained(): Promise<void> {
  const out = process.stdout;
  // a failed write's 'error' comes on a later tick, the stream already destroyed
  await new Promise((resolve) => setImmediate(resolve));
  if (out.destroyed || out.writableLength === 0) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      out.off('drain', done).off('error', done).off('close', done);
      resolve();
    };
    out.on('drain', done).on('error', done).on('close', done);
  });
}

/**
 * After a command: when a write to stdout failed and the command succeeded otherwise,
 * prints one line on stderr saying so, and returns the io exit code (10). A command that
 * failed has printed its own line and keeps its exit code.
 */
export function reportOutputFailure(commandExit: number): number | undefined {
  const failure = current?.failure;
  if (!failure || commandExit !== 0 || !current) {
    current = undefined;
    return undefined;
  }
  const what = outputFailureText(failure);
  const stopped = current.stopped === true;
  current = undefined;
  process.stderr.write(`imgstream: writing the output: ${what} (${stopped ? 'so it stopped, as on SIGTERM' : 'the command itself completed'})\n`);
  return EXIT_CODES.io.exit;
}
