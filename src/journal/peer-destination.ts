// A protection destination on a peer daemon: peer://HOST:PORT/NAME is the directory NAME
// under the daemon's root, served by protect.ship (protect-service.ts). Blocks stream in
// batches of about 1 MiB; a transfer is durable when the daemon answers its 'end'. A
// failed transfer ends the session (the daemon's destination stays at its last interval):
// the shipper calls open() again and resumes from the state it answers.
import { CorruptError, InvalidInputError, NetworkError, type ImgstreamError } from '../core/errors.js';
import { errorOf } from '../format/peer-protocol.js';
import { checkPeerClientOptions, connectPeer, errorFromWire, formatPeerUrl, parsePeerUrl, type PeerChannel, type PeerClientOptions, type PeerMessage, type PeerUrl } from '../peer/index.js';
import type { DestinationState, IntervalBlock, ProtectDestination, ProtectedSource, SeedImage, ShippedInterval } from './destination-api.js';
import type { ProtectStatus } from './protect-status.js';
import { BATCH_BYTES, MAX_BATCH_BLOCKS, PING_MS, PROTECT_PROTOCOL, type BlocksMessage } from './protect-protocol.js';

/** The daemon's answer: its message, or its error raised here (naming the destination once, by `url`). */
function answer(m: PeerMessage | null, peer: string, type: string, when: string, url: string): Record<string, unknown> {
  if (m === null) throw new NetworkError(`peer ${peer}: the daemon closed the connection ${when}`, 'see its log');
  const e = errorOf(m.msg);
  if (e) throw errorFromWire(e, peer, url);
  if (m.msg.type !== type) throw new CorruptError(`peer ${peer}: unexpected answer ${JSON.stringify(m.msg).slice(0, 80)} ${when}`, 'the daemon does not speak this protocol version');
  return m.msg;
}

export class PeerProtectDestination implements ProtectDestination {
  readonly description: string;
  private readonly url: PeerUrl;
  private ch: PeerChannel | null = null;
  private pinger: NodeJS.Timeout | null = null;
  private transferring = false;
  private blockSize = 0;

  constructor(spec: string, private readonly opts: PeerClientOptions) {
    this.url = parsePeerUrl(spec, { requireName: true });
    this.description = formatPeerUrl(this.url);
    checkPeerClientOptions(opts, this.description);
  }

  private channel(): PeerChannel {
    if (!this.ch) throw new NetworkError(`${this.description}: no session with the daemon (a transfer failed, or open() was not called)`, 'open the destination again');
    return this.ch;
  }

  /** Batch payload buffers the socket is done with (reused memory costs no page faults). */
  private readonly payloads: Buffer[] = [];

  private payloadBuffer(): Buffer {
    return this.payloads.pop() ?? Buffer.allocUnsafe(BATCH_BYTES + this.blockSize);
  }

  async open(source: ProtectedSource, keepMs: number | null): Promise<DestinationState> {
    const ch = await connectPeer(this.url, this.opts);
    try {
      await ch.send({ op: 'protect.ship', name: this.url.name, protocol: PROTECT_PROTOCOL, source: { ...source }, keepMs });
      const m = answer(await ch.receive(), ch.peer, 'state', 'instead of opening the destination', this.description);
      this.ch = ch;
      this.blockSize = source.blockSize;
      this.pinger = setInterval(() => {
        if (!this.transferring) void ch.send({ type: 'ping' }).catch(() => {});
      }, Number(process.env.IMGSTREAM_PROTECT_PING_MS) || PING_MS);
      this.pinger.unref();
      return m.state as DestinationState;
    } catch (err) {
      await ch.close();
      throw err;
    }
  }

  /** Sends a transfer's header, its blocks in batches, its end; resolves with the daemon's state once it is durable there. */
  private async transfer(header: Record<string, unknown>, blocks: AsyncIterable<IntervalBlock> | Iterable<IntervalBlock>, stableData = false): Promise<DestinationState> {
    this.transferring = true;
    try {
      return await this.send(header, blocks, stableData);
    } finally {
      this.transferring = false;
    }
  }

  private async send(header: Record<string, unknown>, blocks: AsyncIterable<IntervalBlock> | Iterable<IntervalBlock>, stableData = false): Promise<DestinationState> {
    const ch = this.channel();
    // the daemon may refuse at any moment: its answer is the error to raise
    const reply = (async () => {
      try {
        return { m: await ch.receive() };
      } catch (err) {
        return { err: err as ImgstreamError };
      }
    })();
    try {
      await ch.send(header);
      // a batch: its entries, and the data of those with data: the blocks' own buffers when
      // they stay as they are (the socket gathers them), else copied into one payload (the
      // blocks' buffers may be reused by their source once the next one is asked for)
      let lbns: number[] = [];
      let flags: Array<0 | 1> = [];
      let runs: number[] | null = null; // only when an entry of the batch is a run of zeros
      let parts: Buffer[] = [];
      let partCrcs: number[] = []; // each part's crc32 where its source knew it (-1: not known)
      let payload = this.payloadBuffer();
      let bytes = 0;
      const flush = async () => {
        if (!lbns.length) return;
        const msg: BlocksMessage = runs ? { type: 'blocks', lbns, data: flags, runs } : { type: 'blocks', lbns, data: flags };
        lbns = [];
        flags = [];
        runs = null;
        if (bytes === 0) return ch.send(msg);
        const n = bytes;
        bytes = 0;
        if (stableData) {
          const p = parts;
          const c = partCrcs;
          parts = [];
          partCrcs = [];
          return ch.sendOwnedParts(msg, p, undefined, c);
        }
        // the socket takes the payload as it is; its buffer serves a later batch once sent
        const full = payload;
        payload = this.payloadBuffer();
        await ch.sendOwned(msg, full.subarray(0, n), undefined, () => this.payloads.push(full));
      };
      const what = header.type === 'seed' ? 'seed' : `interval ${String(header.seq)}`;
      /** Adds a block to the batch; true when the batch is full. */
      const add = (b: IntervalBlock): boolean => {
        // a block of another size would not even frame: refused here as the destination would
        if (b.data && b.data.length !== this.blockSize) throw new InvalidInputError(`${what}: block ${b.lbn} has ${b.data.length} bytes, not ${this.blockSize}`);
        const run = b.count ?? 1;
        if (run !== 1 && runs === null) runs = lbns.map(() => 1);
        lbns.push(b.lbn);
        flags.push(b.data ? 1 : 0);
        runs?.push(run);
        if (b.data) {
          if (stableData) {
            parts.push(b.data);
            partCrcs.push(b.crc ?? -1);
          } else payload.set(b.data, bytes);
          bytes += b.data.length;
        }
        return bytes >= BATCH_BYTES || lbns.length >= MAX_BATCH_BLOCKS;
      };
      // (blocks given synchronously are taken so: a turn of the promise machinery per block cost more than the rest of its handling)
      if (Symbol.iterator in blocks) {
        for (const b of blocks) if (add(b)) await flush();
      } else for await (const b of blocks) if (add(b)) await flush();
      await flush();
      await ch.send({ type: 'end' });
    } catch (err) {
      // a send failed because the daemon refused (its answer says why), or the blocks'
      // source failed here: the daemon is told, and the session ends either way
      let timer: NodeJS.Timeout | undefined;
      const r = await Promise.race([reply, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 500)))]);
      clearTimeout(timer);
      if (r === null) await ch.send({ error: { code: 'io', message: 'the shipper gave up the transfer' } }).catch(() => {});
      await this.drop();
      if (r && 'm' in r && r.m && errorOf(r.m.msg)) throw errorFromWire(errorOf(r.m.msg)!, ch.peer, this.description);
      throw err;
    }
    const r = await reply;
    try {
      if ('err' in r) throw r.err;
      return answer(r.m, ch.peer, 'state', 'before acknowledging the transfer', this.description).state as DestinationState;
    } catch (err) {
      await this.drop(); // the daemon ended the session
      throw err;
    }
  }

  /** Ends the session after a failed transfer: the shipper opens the destination again. */
  private async drop(): Promise<void> {
    const ch = this.ch;
    this.ch = null;
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = null;
    await ch?.close();
  }

  seed(image: SeedImage): Promise<DestinationState> {
    return this.transfer({ type: 'seed', journalTo: image.journalTo, time: image.time, blockCount: image.blockCount }, image.blocks);
  }

  append(i: ShippedInterval): Promise<DestinationState> {
    return this.transfer({ type: 'interval', seq: i.seq, start: i.start, end: i.end, journalFrom: i.journalFrom, journalTo: i.journalTo, kind: i.kind, snapshots: i.snapshots, ...(i.renames?.length ? { renames: i.renames } : {}), blockCount: i.blockCount, ...(i.entries !== undefined && i.entries !== i.blockCount ? { entries: i.entries } : {}) }, i.blocks, i.stableData === true);
  }

  async quiet(until: number): Promise<DestinationState> {
    const ch = this.channel();
    this.transferring = true;
    try {
      await ch.send({ type: 'quiet', until });
      return answer(await ch.receive(), ch.peer, 'state', 'instead of acknowledging a quiet time', this.description).state as DestinationState;
    } catch (err) {
      await this.drop();
      throw err;
    } finally {
      this.transferring = false;
    }
  }

  async close(): Promise<void> {
    const ch = this.ch;
    this.ch = null;
    if (this.pinger) clearInterval(this.pinger);
    this.pinger = null;
    if (!ch) return;
    await ch.send({ type: 'close' }).catch(() => {});
    await ch.close();
  }
}

/** protect status of peer://HOST:PORT/NAME. */
export async function peerProtectStatus(spec: string, opts: PeerClientOptions, verify = false): Promise<ProtectStatus> {
  const u = parsePeerUrl(spec, { requireName: true });
  checkPeerClientOptions(opts, formatPeerUrl(u));
  const ch = await connectPeer(u, opts);
  try {
    // verify: the daemon reads every block there (only the answer crosses the network)
    await ch.send({ op: 'protect.status', name: u.name, ...(verify ? { verify: true } : {}) });
    const m = answer(await ch.receive(), ch.peer, 'status', 'instead of the status', formatPeerUrl(u));
    const status = m.status as ProtectStatus;
    if (verify && !status.verified) throw new InvalidInputError(`${formatPeerUrl(u)}: the daemon did not verify the destination (an older imgstream)`, 'run protect status --verify on the daemon\'s machine, or update its imgstream');
    return { ...status, destination: formatPeerUrl(u) };
  } finally {
    await ch.close();
  }
}
