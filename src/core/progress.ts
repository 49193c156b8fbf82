// What long operations report as they go. The library calls it; the CLI decides how to
// show it (a bar on a terminal, nothing when piped or with --json).
export interface Progress {
  /** A phase starts: `total` units of `unit` ('bytes' or 'blocks'), 0 when unknown. */
  start(label: string, total: number, unit: 'bytes' | 'blocks'): void;
  /** Units done so far in the current phase. */
  update(done: number): void;
  /** The current phase ended. */
  stop(): void;
}

export const noProgress: Progress = { start() {}, update() {}, stop() {} };
