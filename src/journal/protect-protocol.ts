// protect.* over a peer connection (src/peer): how a shipper talks to a protection
// destination on a daemon. After the HELLO { op: 'protect.ship', name, protocol, source,
// keepMs } the daemon opens the destination DIR/NAME and answers { type: 'state' }; then
// each transfer is one header message ({ type: 'seed' | 'interval', ...fields but the
// blocks }; an interval's `renames`, [{ from, to }], when the source renamed snapshots in
// it), its blocks in 'blocks' messages, and { type: 'end' }; the daemon answers
// { type: 'state' } once the transfer is durable, or an error. { type: 'close' } ends
// the session; between transfers the shipper sends { type: 'ping' } now and then, so a
// quiet source does not reach the daemon's --idle-timeout, and { type: 'quiet', until }
// when nothing was written since the last interval (answered with { type: 'state' }). protect.status answers { type: 'status', status } and closes.
//
// A 'blocks' message: { type: 'blocks', lbns: number[], data: (0|1)[], runs?: number[] }
// and a payload holding the data of the entries with data 1, block after block (entries
// with 0 read as zeros; `runs`, when present, the blocks each entry stands for: a run of
// zeros from its LBN). About BATCH_BYTES of data per message: memory stays bounded on
// both sides. An interval's header carries `entries` when it differs from its blockCount.
import { CorruptError, InvalidInputError } from '../core/errors.js';
import type { IntervalBlock, SnapshotRename } from './destination-api.js';

/**
 * 2: intervals carry `renames`. A daemon speaking 1 ignored them, so a shipper speaking 2
 * is refused by it (naming both versions) rather than having renames dropped in silence;
 * a daemon speaking 2 still takes a shipper speaking 1 (which never sends them).
 * 3: entries may be runs of zeros (`runs`, `entries`), refused the same way by older daemons.
 * 4: the journal's identity is tied to its directory (`journalId`, with `journalIdWas` for
 * destinations fed before): a daemon speaking 3 would take it for another journal's.
 */
export const PROTECT_PROTOCOL = 4;
/** The versions a daemon takes from shippers. */
export const PROTECT_PROTOCOLS_TAKEN: readonly number[] = [1, 2, 3, 4];
export const BATCH_BYTES = 1 << 20;
export const MAX_BATCH_BLOCKS = 4096;
/** How often an idle shipper pings (well under the daemon's default 10-minute idle timeout). */
export const PING_MS = 60_000;

export type BlocksMessage = {
  type: 'blocks';
  lbns: number[];
  data: Array<0 | 1>;
  runs?: number[];
};

/** An interval header's `renames` (absent: none); a malformed one is refused. */
export function renamesOf(v: unknown): SnapshotRename[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((r) => typeof r === 'object' && r !== null && typeof (r as SnapshotRename).from === 'string' && typeof (r as SnapshotRename).to === 'string')) {
    throw new CorruptError('malformed interval message: renames');
  }
  return v.map((r: SnapshotRename) => ({ from: r.from, to: r.to }));
}

/** The blocks of one 'blocks' message, checked against the block size; with `crcs`, each block's crc32 (unit crc32s of the payload: see PeerChannel.setPayloadUnit). */
export function decodeBatch(msg: Record<string, unknown>, payload: Buffer | null, blockSize: number, crcs?: Uint32Array): IntervalBlock[] {
  const lbns = msg.lbns;
  const data = msg.data;
  const runs = msg.runs;
  if (!Array.isArray(lbns) || !Array.isArray(data) || lbns.length !== data.length || lbns.length > MAX_BATCH_BLOCKS) throw new CorruptError('malformed blocks message');
  if (runs !== undefined && (!Array.isArray(runs) || runs.length !== lbns.length)) throw new CorruptError('malformed blocks message: runs');
  const withData = data.filter((d) => d === 1).length;
  if ((payload?.length ?? 0) !== withData * blockSize) throw new CorruptError(`blocks message: ${payload?.length ?? 0} bytes of data for ${withData} blocks of ${blockSize}`);
  const out: IntervalBlock[] = [];
  let at = 0;
  for (let i = 0; i < lbns.length; i++) {
    const lbn = lbns[i];
    if (typeof lbn !== 'number' || !Number.isSafeInteger(lbn) || lbn < 0) throw new InvalidInputError(`blocks message: invalid block number ${String(lbn)}`);
    const run: unknown = runs === undefined ? 1 : runs[i];
    if (typeof run !== 'number' || !Number.isSafeInteger(run) || run < 1 || (run > 1 && data[i] === 1)) throw new InvalidInputError(`blocks message: invalid run of ${String(run)} blocks at ${lbn}`);
    if (data[i] === 1) {
      const block = payload!.subarray(at, at + blockSize);
      out.push(crcs !== undefined ? { lbn, data: block, crc: crcs[at / blockSize] } : { lbn, data: block });
      at += blockSize;
    } else out.push(run > 1 ? { lbn, data: null, count: run } : { lbn, data: null });
  }
  return out;
}
