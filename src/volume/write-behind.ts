// Writes of block data that need not be done before the caller goes on: they run on
// libuv's threads while the caller parses and checks what comes next, with a bound on the
// bytes in flight. For data that lands only on VBNs the volume's last CP does not use
// (restore, mirror transfers): nothing reads them back before the CP, whose sync comes
// after drain(). The buffers given must not change until drain() returns.
import fs from 'node:fs';
import { fromSystemError } from '../errors.js';
import type { BlockFile } from './block-file.js';

const MAX_IN_FLIGHT = 32 << 20;

export class WriteBehind {
  private inFlight = 0;
  private failure: Error | null = null;
  private readonly waiters: Array<() => void> = [];

  constructor(private readonly file: BlockFile, private readonly maxBytes = MAX_IN_FLIGHT) {}

  /** Starts writing `buf` at `position`; waits first while too much is in flight. Throws an earlier write's error. */
  async write(buf: Uint8Array, position: number): Promise<void> {
    if (this.failure) throw this.failure;
    while (this.inFlight > 0 && this.inFlight + buf.length > this.maxBytes) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
    this.inFlight += buf.length;
    this.writeAll(buf, 0, position);
  }

  private writeAll(buf: Uint8Array, done: number, position: number): void {
    fs.write(this.file.fd, buf, done, buf.length - done, position + done, (err, n) => {
      if (!err && done + n < buf.length) return this.writeAll(buf, done + n, position);
      if (err) this.failure ??= fromSystemError(err, this.file.path, 'writing');
      this.inFlight -= buf.length;
      for (const w of this.waiters.splice(0)) w();
    });
  }

  /** Waits for every write; throws the first error. */
  async drain(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((r) => this.waiters.push(r));
    if (this.failure) throw this.failure;
  }

  /** Waits for every write, ignoring errors (before giving up on the volume). */
  async settle(): Promise<void> {
    while (this.inFlight > 0) await new Promise<void>((r) => this.waiters.push(r));
  }
}
