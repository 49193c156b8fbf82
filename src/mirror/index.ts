// Mirroring: a volume kept as an exact replica (same VBNs, same snapshots) elsewhere, by
// incremental transfers the mark-on-allocate planes choose. protocol.ts is the
// conversation, sender.ts the source side (selection.ts the blocks it sends,
// record-queue.ts compressing and sending its records in order, source-access.ts its
// snapshot and plane swap on the source), receiver.ts the destination side
// (apply-transfer.ts writing a transfer's records, record-inflater.ts for compressed
// records, side-files.ts what it keeps beside the volume while a transfer is under way),
// state.ts what the source remembers, run.ts the commands' operations (schedule.ts mirror
// start's --every and --cron). A destination is a
// peer (peer://HOST:PORT/NAME, served by `imgstream serve peer`) or a volume path on this
// machine.
import { channelPair, type MirrorChannel } from './protocol.js';
import { receiveMirror } from './receiver.js';

export * from './protocol.js';
export * from './sender.js';
export * from './receiver.js';
export * from './state.js';

/**
 * A channel to a destination volume on this machine: the receiver runs in this process.
 * `settled` ends when the receiver is done (its errors are the sender's to report).
 */
export function localDestination(destPath: string, log?: (line: string) => void, opts: { ackBytes?: number; compress?: boolean } = {}): { channel: MirrorChannel; settled: Promise<void> } {
  const [source, dest] = channelPair();
  const settled = (async () => {
    const hello = await dest.receive();
    if (!hello) return;
    try {
      await receiveMirror(destPath, dest, hello.msg, { log, ackBytes: opts.ackBytes, compress: opts.compress });
    } catch {
      /* sent to the source as { error } */
    } finally {
      dest.close();
    }
  })();
  return { channel: source, settled };
}
