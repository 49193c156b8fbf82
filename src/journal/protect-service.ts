// The daemon's side of protect.* (see protect-protocol.ts): a LocalProtectDestination at
// DIR/NAME, fed from the connection. One session per destination in this daemon (the
// destination's lock is per process, so the daemon keeps its own set), and the blocks
// of a transfer come off the channel as the destination writes them: bounded memory.
import { BusyError, CorruptError, InvalidInputError, NetworkError } from '../core/errors.js';
import { errorOf } from '../format/peer-protocol.js';
import { hideDaemonPaths, peerServices, registerPeerService, type PeerChannel, type PeerHello } from '../peer/index.js';
import type { DestinationState, IntervalBlock, ProtectedSource } from './destination-api.js';
import { LocalProtectDestination } from './local-destination.js';
import { protectStatus, verifiedProtectStatus } from './protect-status.js';
import type { DestinationVerification } from './verify-destination.js';
import { exportProtectedAsOf } from './restore-as-of.js';
import { decodeBatch, PROTECT_PROTOCOLS_TAKEN, renamesOf } from './protect-protocol.js';

const shipping = new Set<string>();

function sourceOf(hello: PeerHello): ProtectedSource {
  const s = hello.source as Record<string, unknown> | undefined;
  if (!s || typeof s.uuid !== 'string' || typeof s.path !== 'string' || typeof s.blockSize !== 'number' || typeof s.logicalSize !== 'number') {
    throw new InvalidInputError('protect.ship: the request names no source volume');
  }
  // (a journal's identity and end where the shipper sends them: older ones do not)
  const journalId = typeof s.journalId === 'string' && /^[0-9a-f]{32}$/.test(s.journalId) ? { journalId: s.journalId } : {};
  const journalIdWas = typeof s.journalIdWas === 'string' && /^[0-9a-f]{32}$/.test(s.journalIdWas) ? { journalIdWas: s.journalIdWas } : {};
  const journalLast = Number.isSafeInteger(s.journalLast) ? { journalLast: s.journalLast as number } : {};
  const journalDamage = typeof s.journalDamage === 'string' && s.journalDamage.length <= 4096 ? { journalDamage: s.journalDamage } : {};
  return { uuid: s.uuid, path: s.path, blockSize: s.blockSize, logicalSize: s.logicalSize, ...journalId, ...journalIdWas, ...journalLast, ...journalDamage };
}

/**
 * The blocks of one transfer, read off the channel until its 'end'. An iterator rather than
 * an async generator: the blocks of a batch are handed out as they are, without a turn of
 * the generator's machinery each (a daemon spent more on that than on writing the block).
 */
function blocksFrom(ch: PeerChannel, blockSize: number, counted: { n: number }): AsyncIterable<IntervalBlock> {
  let batch: IntervalBlock[] = [];
  let at = 0;
  let used: Buffer | null = null;
  let ended = false;
  const refill = async (): Promise<IteratorResult<IntervalBlock>> => {
    for (;;) {
      // the blocks before were used (consumers copy what they keep): their payload's memory takes a later one
      if (used) ch.recycle(used, Promise.resolve());
      used = null;
      if (ended) return { value: undefined, done: true };
      const m = await ch.receive();
      if (m === null) throw new NetworkError(`peer ${ch.peer}: the shipper went away in the middle of a transfer`);
      if (errorOf(m.msg)) throw new NetworkError(`peer ${ch.peer}: the shipper gave up the transfer`);
      if (m.msg.type === 'end') {
        ended = true;
        return { value: undefined, done: true };
      }
      if (m.msg.type !== 'blocks') throw new CorruptError(`unexpected ${String(m.msg.type)} message in a transfer`);
      batch = decodeBatch(m.msg, m.payload, blockSize, m.unitCrcs);
      at = 0;
      used = m.payload;
      if (at < batch.length) {
        counted.n++;
        return { value: batch[at++], done: false };
      }
    }
  };
  const next = (): Promise<IteratorResult<IntervalBlock>> => {
    if (at >= batch.length) return refill();
    counted.n++;
    return Promise.resolve({ value: batch[at++], done: false });
  };
  return { [Symbol.asyncIterator]: () => ({ next }) };
}

function num(msg: Record<string, unknown>, field: string): number {
  const v = msg[field];
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new InvalidInputError(`protect.ship: ${field} is missing or not a number`);
  return v;
}

async function ship(ch: PeerChannel, hello: PeerHello, dir: string, log: (l: string) => void): Promise<void> {
  if (typeof hello.protocol !== 'number' || !PROTECT_PROTOCOLS_TAKEN.includes(hello.protocol)) {
    throw new InvalidInputError(`protect.ship: protocol ${String(hello.protocol)} is not spoken here (${PROTECT_PROTOCOLS_TAKEN.join(', ')})`, 'run the same imgstream version on both sides');
  }
  if (shipping.has(dir)) throw new BusyError(`${String(hello.name)}: another shipper holds this protection destination`, 'stop it first');
  const source = sourceOf(hello);
  // each block's checksum comes with the frame's check (the interval file's index keeps it): the payload is read once
  ch.setPayloadUnit(source.blockSize);
  const dest = new LocalProtectDestination(dir);
  shipping.add(dir);
  try {
    let state: DestinationState = await dest.open(source, hello.keepMs === null ? null : num(hello, 'keepMs'));
    await ch.send({ type: 'state', state });
    for (;;) {
      const m = await ch.receive();
      if (m === null || m.msg.type === 'close') return;
      const msg = m.msg;
      if (msg.type === 'ping') continue; // a shipper with nothing to ship keeps the session
      if (msg.type === 'quiet') {
        state = await dest.quiet(num(msg, 'until'));
        await ch.send({ type: 'state', state });
        continue;
      }
      const counted = { n: 0 };
      const blocks = blocksFrom(ch, source.blockSize, counted);
      if (msg.type === 'seed') {
        state = await dest.seed({ journalTo: num(msg, 'journalTo'), time: num(msg, 'time'), blockCount: num(msg, 'blockCount'), blocks });
        log(`protect.ship ${String(hello.name)}: seed, ${counted.n} blocks`);
      } else if (msg.type === 'interval') {
        const kind = msg.kind === 'resync' ? 'resync' : 'journal';
        const snapshots = Array.isArray(msg.snapshots) ? msg.snapshots.filter((x): x is string => typeof x === 'string') : [];
        const renames = renamesOf(msg.renames);
        state = await dest.append({ seq: num(msg, 'seq'), start: num(msg, 'start'), end: num(msg, 'end'), journalFrom: num(msg, 'journalFrom'), journalTo: num(msg, 'journalTo'), kind, snapshots, ...(renames.length ? { renames } : {}), blockCount: num(msg, 'blockCount'), ...(msg.entries !== undefined ? { entries: num(msg, 'entries') } : {}), blocks });
      } else throw new CorruptError(`protect.ship: unexpected ${String(msg.type)} message`);
      await ch.send({ type: 'state', state });
    }
  } finally {
    shipping.delete(dir);
    await dest.close();
  }
}

/** Where a scrub left its finding, or why it could not: named without the daemon's paths. */
function hideResync(r: NonNullable<DestinationVerification['resync']>, hide: (t: string) => string): DestinationVerification['resync'] {
  return 'recorded' in r ? { recorded: hide(r.recorded) } : { notRecorded: hide(r.notRecorded) };
}

/** Registers protect.ship and protect.status on every peer daemon started afterwards (once). */
export function registerProtectServices(): void {
  if (peerServices().has('protect.ship')) return;
  registerPeerService('protect.ship', (ch, hello, ctx) => ship(ch, hello, ctx.path, ctx.log));
  registerPeerService('protect.status', async (ch, hello, ctx) => {
    const found = hello.verify === true ? await verifiedProtectStatus(ctx.path) : protectStatus(ctx.path);
    // what it found damaged is named as the client names it (NAME/intervals/...), never by the daemon's paths
    const hide = (t: string) => hideDaemonPaths(t, [ctx.root]);
    const status = { ...found, damaged: found.damaged.map(hide), points: found.points.map((p) => (p.damaged ? { ...p, damaged: hide(p.damaged) } : p)), ...(found.verified ? { verified: { ...found.verified, damaged: found.verified.damaged.map(hide), base: { ...found.verified.base, problems: found.verified.base.problems.map(hide) }, ...(found.verified.resync ? { resync: hideResync(found.verified.resync, hide) } : {}) } } : {}) };
    // the daemon itself holds a destination for the shipper of one of its sessions: its pid is no shipper's
    const viaSession = status.shipper === process.pid;
    await ch.send({ type: 'status', status: viaSession ? { ...status, shipper: null, shipperSession: true } : status });
  });
  // the disk as of a time, as a raw image: { type: 'image', size, source }, then
  // { type: 'data', offset } messages with the non-zero pieces, then { type: 'done', result }
  registerPeerService('protect.export', async (ch, hello, ctx) => {
    if (typeof hello.asOf !== 'string' || hello.asOf.length > 200) throw new InvalidInputError('protect.export: the request names no time');
    let offset = 0;
    const result = await exportProtectedAsOf(ctx.path, hello.asOf, (size, source) => {
      void ch.send({ type: 'image', size, source }).catch(() => {});
      return {
        write: async (data: Buffer) => {
          await ch.send({ type: 'data', offset }, data);
          offset += data.length;
        },
        skip: (bytes: number) => {
          offset += bytes;
        },
        finish: async () => {},
        discard: () => {},
      };
    });
    await ch.send({ type: 'done', result: { ...result, destination: String(hello.name) } });
    ctx.log(`protect.export ${String(hello.name)} as of ${result.point.time}: ${result.overlayBlocks} blocks over the base`);
  });
}
