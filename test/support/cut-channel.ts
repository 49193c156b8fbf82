// A mirror channel that breaks after a number of records went out, like a connection cut
// part way through a transfer (the engine and model tests of the mirror).
import type { MirrorChannel } from '../../src/mirror/index.js';

/** A channel that breaks after `records` records went out, like a cut connection. */
export function cutAfter(ch: MirrorChannel, records: number): MirrorChannel {
  let sent = 0;
  return {
    async send(msg, payload) {
      if (typeof msg.rec === 'number' && sent++ >= records) {
        ch.close();
        throw new Error('connection cut');
      }
      return ch.send(msg, payload);
    },
    receive: () => ch.receive(),
    close: () => ch.close(),
    get bytesSent() {
      return ch.bytesSent;
    },
  };
}
