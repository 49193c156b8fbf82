// What the imgstream(1) overview says beyond the commands: the tool in a few
// paragraphs, its environment variables, and the exit status table built from the one
// table in src/core/errors.ts (the same rows `--help` prints under EXIT CODES).
import { EXIT_CODES, EXIT_INTERNAL } from '../core/errors.js';
import type { EnvironmentVariable, ExitStatusRow } from './roff.js';

export const ABOUT: readonly string[] = [
  `imgstream does block-level backup and mirroring of volumes that keep snapshots as bit planes. It computes storage images as logical sums and differences of snapshot bit planes (for example \`june5 + june4 - june3\`), orders the chosen blocks into an image stream in which every block is tagged with its volume block number (VBN), and writes that stream to a file, to tape files, to a pipe, or to a remote peer.`,
  `A volume is an array of fixed-size blocks (4 KiB by default) in one file or on one block device that also holds all its metadata: copying the file copies the volume. It holds one logical disk, mapped write-anywhere onto its blocks, and the snapshots of that disk. Each snapshot is a bit plane, one bit per block, set for the blocks the snapshot holds; a block is free only when no plane holds it. Changes become visible all at once at a consistency point, so a crash at any moment leaves the volume as of the last one.`,
  `Every command takes --json, which prints its result (or its error) as JSON on standard output, and --quiet, which hides the progress bar; the progress bar is shown only on a terminal, and an image or stream is never written to one (volume export -t -, dump -t -: exit status 4). An error is printed as one line on standard error and the exit status tells its kind (see EXIT STATUS).`,
];

export const ENVIRONMENT: readonly EnvironmentVariable[] = [
  {
    name: 'IMGSTREAM_LOCK_DIR',
    description: 'Directory for volume lock files (one process at a time works on a volume) and the control sockets of servers (through which other commands reach a volume while it is served). Default: /run/lock/imgstream, or $TMPDIR/imgstream-locks where /run/lock is not there (never under a $TMPDIR a service may have to itself). A process given this directory also takes each lock in the default one (and in $TMPDIR/imgstream-locks, the default of earlier versions, where one made it), so commands with different lock directories, or versions, still exclude each other. A value that is not a directory (a regular file, or a path through one) is refused with exit status 4 before anything is opened; one this user may not write in, with 10.',
  },
  {
    name: 'NO_COLOR',
    description: 'Set to anything but the empty string to print error lines without colour on a terminal (see https://no-color.org). Off a terminal they never have any.',
  },
  {
    name: 'IMGSTREAM_DEBUG',
    description: 'Set to 1 to print a stack trace on internal errors (exit status 1).',
  },
];

/** 0, the internal-error status, then every error code with its meaning. */
export function exitStatusRows(): ExitStatusRow[] {
  return [
    { status: 0, meaning: 'success' },
    { status: EXIT_INTERNAL, meaning: 'internal error (a bug: please report it)' },
    ...Object.entries(EXIT_CODES).map(([code, v]) => ({ status: v.exit, meaning: `${code}: ${v.meaning}` })),
  ];
}
