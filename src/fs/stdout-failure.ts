// The error of a stream or image written to stdout whose write failed: the same words as
// the line a command prints when its output failed (src/cli/output-failure.ts), by cause.
// It said "the reading end of the pipe went away" for a full disk too (> /dev/full).
import { IoError } from '../core/errors.js';

/** What failed, for a line: EPIPE named as a reader gone away, others as the system says them. */
export function outputFailureText(err: NodeJS.ErrnoException): string {
  return err.code === 'EPIPE' ? 'EPIPE: the reading end of the pipe went away' : err.message.replace(/, write$/, '');
}

/** The IoError (exit 10) of a stream to stdout that could not be written. */
export function stdoutFailure(err: Error): IoError {
  return new IoError(`writing the output: ${outputFailureText(err as NodeJS.ErrnoException)}`);
}
