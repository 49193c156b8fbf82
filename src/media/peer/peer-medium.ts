// A stream on a peer: peer://HOST:PORT/NAME is the file NAME in the directory of an
// `imgstream serve peer` daemon (../../peer). The target sends the stream with
// stream.put: the daemon checks it as it arrives and renames it into place after fsync,
// so finish() returns only once the peer holds the complete stream, and an aborted or
// broken transfer leaves nothing under NAME. The source reads it back with stream.get.
// Small writes are gathered into messages of about 1 MiB.
import { CorruptError, ImgstreamError, NetworkError } from '../../core/errors.js';
import { errorOf } from '../../format/peer-protocol.js';
import { checkPeerClientOptions, connectPeer, errorFromWire, formatPeerUrl, parsePeerUrl, type PeerChannel, type PeerClientOptions, type PeerMessage } from '../../peer/index.js';
import type { MediaPosition, SourceStream, StreamSource, StreamTarget } from '../medium.js';

export interface PeerTargetOptions extends PeerClientOptions {
  /** Replace NAME when the peer already holds it. */
  force?: boolean;
}

/** Writes at least this large go out as they are; smaller ones are gathered. */
const GATHER_BYTES = 1 << 20;
/** Largest data message sent. */
const CHUNK_BYTES = 16 << 20;
/** How long a failed send waits for the daemon's explanation. */
const EXPLAIN_MS = 2000;

export interface PeerTarget extends StreamTarget {
  /** Connects and has the daemon accept NAME (exists, --force, a bad name are refused here). write() calls it too. */
  open(): Promise<void>;
}

function unexpected(m: PeerMessage, peer: string, when: string): CorruptError {
  return new CorruptError(`peer ${peer}: unexpected answer ${JSON.stringify(m.msg).slice(0, 80)} ${when}`, 'the daemon does not speak this protocol version');
}

/** The daemon's message as an error (it refused or failed; one about NAME names `location` once), or null for anything else. */
function refusal(m: PeerMessage | null, peer: string, when: string, location: string): ImgstreamError | null {
  if (m === null) return new NetworkError(`peer ${peer}: the daemon closed the connection ${when}`, 'see its log');
  const e = errorOf(m.msg);
  return e ? errorFromWire(e, peer, location) : null;
}

export function peerTarget(url: string, opts: PeerTargetOptions): PeerTarget {
  const u = parsePeerUrl(url);
  const location = formatPeerUrl(u);
  checkPeerClientOptions(opts, location);
  let ch: PeerChannel | null = null;
  let opening: Promise<void> | null = null;
  /** The daemon's next message: it says nothing until the end, unless it refuses the stream. */
  let reply: Promise<PeerMessage | null> | null = null;
  let replied = false;
  let failed: Error | null = null;
  let sent = 0;
  const gather = Buffer.allocUnsafe(GATHER_BYTES);
  let gathered = 0;

  const connect = async () => {
    const c = await connectPeer(u, opts);
    ch = c;
    await c.send({ op: 'stream.put', name: u.name, force: opts.force === true });
    const r = await c.receive();
    const refused = refusal(r, c.peer, 'instead of accepting the stream', location);
    if (refused) throw refused;
    if (r!.msg.type !== 'ready') throw unexpected(r!, c.peer, 'to stream.put');
    reply = c.receive();
    reply.then(
      (m) => {
        replied = true;
        // the daemon stopped the transfer (it failed, or it is shutting down): sends stop
        // now, and explain() gives its reason
        const e = m === null ? null : errorOf(m.msg);
        if (e) c.destroy(errorFromWire(e, c.peer, location));
      },
      () => (replied = true),
    );
  };

  /**
   * What went wrong, as the daemon tells it when it did (its error message, of any kind: a
   * daemon shutting down says so); that it closed the connection only when `closedIsNews`
   * (the daemon's early answer is all that is known), not over a local error of our own.
   */
  const explain = async (err: unknown, closedIsNews = false): Promise<Error> => {
    if (reply && ch) {
      let timer: NodeJS.Timeout | undefined;
      const m = await Promise.race([reply.catch(() => undefined), new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), EXPLAIN_MS)))]);
      clearTimeout(timer);
      if (m !== undefined) {
        const r = refusal(m, ch.peer, 'in the middle of the stream', location);
        if (r && (m !== null || closedIsNews)) return r;
      }
    }
    return err as Error;
  };

  const sendData = async (b: Buffer) => {
    if (replied) throw await explain(new NetworkError(`peer ${ch!.peer}: the daemon answered before the end of the stream`), true);
    await ch!.send({ type: 'data' }, b);
    sent += b.length;
  };

  const flush = async () => {
    if (gathered === 0) return;
    await sendData(gather.subarray(0, gathered));
    gathered = 0;
  };

  const fail = async (err: unknown): Promise<never> => {
    failed ??= await explain(err);
    ch?.destroy();
    throw failed;
  };

  const target: PeerTarget = {
    description: `peer ${location}`,
    async open() {
      if (failed) throw failed;
      opening ??= connect();
      try {
        await opening;
      } catch (err) {
        await fail(err);
      }
    },
    async write(data) {
      if (failed) throw failed;
      await target.open();
      try {
        if (data.length >= GATHER_BYTES) {
          await flush();
          for (let o = 0; o < data.length; o += CHUNK_BYTES) await sendData(data.subarray(o, Math.min(data.length, o + CHUNK_BYTES)));
        } else {
          if (gathered + data.length > GATHER_BYTES) await flush();
          data.copy(gather, gathered);
          gathered += data.length;
        }
      } catch (err) {
        await fail(err);
      }
    },
    async finish(): Promise<MediaPosition> {
      if (failed) throw failed;
      await target.open();
      try {
        await flush();
        await ch!.send({ type: 'end', bytes: sent });
        const r = await reply!;
        const refused = refusal(r, ch!.peer, 'before confirming the stream: it is not stored', location);
        if (refused) throw refused;
        if (r!.msg.type !== 'done') throw unexpected(r!, ch!.peer, 'at the end of the stream');
        if (r!.msg.bytes !== sent) throw new CorruptError(`peer ${ch!.peer}: the daemon stored ${String(r!.msg.bytes)} bytes of the ${sent} sent`);
      } catch (err) {
        await fail(err);
      }
      await ch!.close();
      return { kind: 'peer', location };
    },
    async abort() {
      failed ??= new NetworkError(`peer ${location}: the stream was aborted`);
      await opening?.catch(() => {});
      const c = ch;
      if (!c) return;
      // tell the daemon, so it removes its temporary file at once; cutting the
      // connection does the same a moment later
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([c.send({ type: 'abort' }).catch(() => {}), new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)))]);
      clearTimeout(timer);
      c.destroy();
    },
  };
  return target;
}

export function peerSource(url: string, opts: PeerClientOptions): StreamSource {
  const u = parsePeerUrl(url);
  const location = formatPeerUrl(u);
  checkPeerClientOptions(opts, location);
  return {
    description: `peer ${location}`,
    async *streams(): AsyncGenerator<SourceStream> {
      const ch = await connectPeer(u, opts);
      let complete = false;
      try {
        await ch.send({ op: 'stream.get', name: u.name });
        const r = await ch.receive();
        const refused = refusal(r, ch.peer, 'instead of sending the stream', location);
        if (refused) throw refused;
        const total = r!.msg.bytes;
        if (r!.msg.type !== 'stream' || !Number.isSafeInteger(total)) throw unexpected(r!, ch.peer, 'to stream.get');
        const bytes = async function* (): AsyncGenerator<Buffer> {
          let got = 0;
          for (;;) {
            const m = await ch.receive();
            const broken = refusal(m, ch.peer, `after ${got} of ${String(total)} bytes of the stream`, location);
            if (broken) throw broken;
            if (m!.msg.type === 'data' && m!.payload) {
              got += m!.payload.length;
              yield m!.payload;
            } else if (m!.msg.type === 'end') {
              if (got !== total || m!.msg.bytes !== got) throw new CorruptError(`${location}: ${got} bytes arrived, ${String(total)} announced`);
              complete = true;
              return;
            } else throw unexpected(m!, ch.peer, 'in the stream');
          }
        };
        yield { name: location, position: { kind: 'peer', location }, bytes: bytes() };
      } finally {
        if (complete) await ch.close();
        else ch.destroy();
      }
    },
  };
}
