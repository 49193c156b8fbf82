// Verify: read streams end to end, check every checksum (reader), and the chain of each
// volume: each stream's base among the snapshots of that volume's streams before it (or,
// for its first stream, simply named: the volume it goes onto must hold it). Writes nothing.
import { CorruptError, ImgstreamError, InvalidInputError, NotFoundError, errorOfCode } from '../core/errors.js';
import type { SourceStream, StreamSource } from '../media/medium.js';
import { noProgress, type Progress } from '../core/progress.js';
import { RecordedEncryption, refuseUnencryptedInPlace } from './chain-encryption.js';
import type { DumpRecord } from '../catalog/index.js';
import { readImageStream } from './stream-reader.js';
import type { StreamHeader } from '../format/image-stream.js';
import type { KeyOption } from '../crypt/index.js';
import { anotherCopys } from './restore-fits.js';

/** A snapshot the streams read so far bring (or name as a base): by identity, its creation time where known. */
interface Known {
  name: string;
  generation: number;
  createdMs?: number;
}

/** What restore and verify report of each stream they read. */
export interface StreamSummary {
  stream: string;
  streamId: string;
  level: number;
  base: string | null;
  top: string;
  snapshots: string[];
  blocks: number;
  bytes: number;
}

export interface VerifiedStream extends StreamSummary {
  volume: string;
  streamBytes: number;
  sha256: string;
  created: string;
}

export interface VerifyResult {
  ok: boolean;
  streams: VerifiedStream[];
  blocks: number;
  bytes: number;
  /** Snapshot the first stream needs on the volume it is restored onto (null: a full chain). */
  needs: string | null;
  /** Each volume's chain (one unless the sources hold streams of several volumes). */
  chains: VerifiedChain[];
  /** Damage found around the streams that left them whole (a multiplexed tape file's backup log), one line each. */
  damage?: string[];
  /** Streams their dumps gave up (a multiplexed tape file's aborted members): not verified, no failure; one line each. */
  givenUp?: string[];
}

/** One volume's chain among the streams verified: what its first stream needs. */
export interface VerifiedChain {
  volume: string;
  streams: number;
  /** Snapshot its first stream needs on the volume it is restored onto (null: it starts with a full stream). */
  needs: string | null;
}

export interface VerifyOptions {
  /** The catalog's records, read when an unencrypted stream is met: one the catalog records as encrypted is refused (see chain-encryption.ts). */
  catalog?: () => DumpRecord[];
  /** Told (one line) when that catalog cannot be read: then it holds nothing, as none at all. */
  catalogUnreadable?: (line: string) => void;
}

/** `key`: of encrypted streams (without it they are refused, AuthError). */
export async function verifyStreams(sources: StreamSource[], progress: Progress = noProgress, key: KeyOption = null, opts: VerifyOptions = {}): Promise<VerifyResult> {
  const result: VerifyResult = { ok: true, streams: [], blocks: 0, bytes: 0, needs: null, chains: [] };
  const recorded = opts.catalog ? new RecordedEncryption(opts.catalog, opts.catalogUnreadable ?? (() => {})) : null;
  // streams of several volumes (a tape holding the dumps of several) are as many chains,
  // each checked on its own; a full stream after a chain that began with one starts another
  // each full stream of a volume starts a chain of its own (a weekly level 0); an incremental
  // goes on the newest one holding its base (an extra level 0 of an older snapshot, dumped
  // for offsite, does not cut off the chain the next level 1 is on)
  const chains = new Map<string, { chain: VerifiedChain; knowns: Array<Map<number, Known>> }>();
  // the streams of a multiplexed tape file are checked one and all: each one that fails is
  // named, and the first failure is raised after the others were read
  const failed: Array<{ stream: string; error: Error }> = [];
  /** Each chain's last encrypted stream: an unencrypted one after it could be anyone's. */
  const encryptedIn = new WeakMap<Map<number, Known>, string>();
  for (const src of sources) await src.precheck?.(); // a set missing its last tape: before reading the rest
  for (const src of sources) {
    for await (const s of src.streams()) {
      if (s.givenUp !== undefined) {
        (result.givenUp ??= []).push(`${s.name}: ${s.givenUp}`);
        continue;
      }
      if (s.position.stream !== undefined || s.lost) {
        try {
          await verifyOne(s);
        } catch (err) {
          if (!(err instanceof ImgstreamError)) throw err;
          failed.push({ stream: s.name, error: err });
          progress.stop();
        }
      } else await verifyOne(s);
      // after the stream: a backup log may be found wrong only as its members are read
      if (s.mediumDamage !== undefined && !result.damage?.includes(s.mediumDamage)) (result.damage ??= []).push(s.mediumDamage);
    }
  }
  if (failed.length > 0) {
    const first = failed[0].error as ImgstreamError;
    const what = failed.map((f) => f.error.message).join('; ');
    const passed = result.streams.length > 0 ? `; the other ${result.streams.length} stream(s) verified` : '';
    throw errorOfCode(first.code, `${failed.length === 1 ? what : `${failed.length} streams failed: ${what}`}${passed}`, first.hint, { ...result, ok: false, failed: failed.map((f) => ({ stream: f.stream, error: f.error.message })) });
  }
  if (result.streams.length === 0) throw new NotFoundError('no stream found in the sources given');
  return result;

  async function verifyOne(s: SourceStream): Promise<void> {
    {
      let v: VerifiedStream | null = null;
      let blockSize = 0;
      for await (const rec of readImageStream(s.bytes, s.name, undefined, { key })) {
        if (rec.type === 'header') {
          const h = rec.header;
          recorded?.refuse(s.name, h, s.position);
          let c = chains.get(h.volume.uuid);
          let known: Map<number, Known>;
          if (!c) {
            known = new Map();
            c = { chain: { volume: h.volume.uuid, streams: 0, needs: h.base ? h.base.name : null }, knowns: [known] };
            chains.set(h.volume.uuid, c);
            result.chains.push(c.chain);
            if (result.chains.length === 1) result.needs = c.chain.needs;
          } else if (h.base === null) {
            if (c.chain.needs !== null) throw new InvalidInputError(`${s.name}: a full (level ${h.level}) stream in the middle of a chain`, 'a chain is one full stream followed by incrementals');
            known = new Map(); // a new full dump of the volume: a new chain
            c.knowns.push(known);
          } else {
            const base = h.base;
            const holding = [...c.knowns].reverse().find((m) => m.get(base.id)?.generation === base.generation);
            // (by the time it was taken too, where the stream says: a replica's snapshot may have the same id and generation)
            const k = holding?.get(base.id);
            if (k && base.createdMs !== undefined && k.createdMs !== undefined && k.createdMs !== base.createdMs) throw anotherCopys(s.name, `its base snapshot "${base.name}"`, base.createdMs, 'the streams before it bring one', k.createdMs);
            if (!holding) throw new NotFoundError(`${s.name}: its base snapshot "${base.name}" is not in the streams before it`, 'give the streams in chain order: level 0 first');
            known = holding;
            for (const x of h.snapshots) {
              const had = known.get(x.id);
              if (had && had.name === x.name && had.generation === x.generation && had.createdMs !== undefined && had.createdMs !== x.createdMs) throw anotherCopys(s.name, `its snapshot "${x.name}"`, x.createdMs, 'the streams before it bring one', had.createdMs);
            }
            refuseUnencryptedInPlace(s.name, h, undefined, encryptedIn.get(known) ?? null);
            const dropped = deletedAtSource(h, known);
            refuseLaterSnapshots(s.name, h, known, dropped);
            for (const id of dropped) known.delete(id);
          }
          if (h.encryption) encryptedIn.set(known, s.name);
          c.chain.streams++;
          blockSize = h.volume.blockSize;
          v = { stream: s.name, streamId: h.streamId, volume: h.volume.uuid, level: h.level, base: h.base?.name ?? null, top: h.top.name, snapshots: h.snapshots.map((x) => x.name), blocks: 0, bytes: 0, streamBytes: 0, sha256: '', created: h.created };
          for (const x of h.snapshots) known.set(x.id, { name: x.name, generation: x.generation, createdMs: x.createdMs });
          if (h.base) known.set(h.base.id, known.get(h.base.id) ?? { name: h.base.name, generation: h.base.generation, createdMs: h.base.createdMs });
          progress.start(`verifying ${h.top.name}`, h.image.bytes, 'bytes');
        } else if (rec.type === 'data') {
          v!.blocks += rec.vbns.length;
          v!.bytes += rec.data.length;
          progress.update(v!.bytes);
        } else if (rec.type === 'mapdelta') {
          // map blocks sent as differences: each is a block the restore writes
          v!.blocks += rec.nodes.length;
          v!.bytes += rec.nodes.length * blockSize;
          progress.update(v!.bytes);
        } else if (rec.type === 'trailer') {
          v!.streamBytes = rec.streamBytes;
          v!.sha256 = rec.trailer.sha256;
        }
      }
      progress.stop();
      if (!v || !v.sha256) throw new CorruptError(`${s.name}: stream ended without its trailer`);
      result.streams.push(v);
      result.blocks += v.blocks;
      result.bytes += v.bytes;
    }
  }
}

/**
 * As restore refuses it: the streams before this incremental brought snapshots taken after
 * its base that it does not bring, and that its source had not deleted (two incrementals of
 * one base, an older incremental after a newer one or after a newer full stream). Restoring
 * the chain would stop there.
 */
function refuseLaterSnapshots(name: string, h: StreamHeader, known: Map<number, Known>, dropped: Set<number>): void {
  const carried = new Map(h.snapshots.map((x) => [x.id, x] as const));
  // a shadow one at the source is not carried (its blocks may hold the stream's): restore keeps it, made a shadow one
  const shadowThere = (id: number, k: Known) => (h.retained ?? []).some((r) => r.shadow === true && r.id === id && r.generation === k.generation);
  const later = [...known].filter(([id, k]) => id > h.base!.id && !dropped.has(id) && !shadowThere(id, k) && !(carried.get(id)?.name === k.name && carried.get(id)?.generation === k.generation)).map(([, k]) => `"${k.name}"`);
  if (later.length === 0) return;
  throw new InvalidInputError(
    `${name}: the streams before it bring snapshot${later.length > 1 ? 's' : ''} ${later.join(', ')} taken after its base snapshot "${h.base!.name}" that it does not bring: restore would refuse it there (a later stream of the chain came first, or two incrementals of one base are given)`,
    'give one chain in order: level 0, then each incremental once, each on the one before',
  );
}

/**
 * The snapshots a restore of this stream drops, as restore's deletedAtSource picks them (the
 * source had deleted them by its top: StreamHeader.retained): those before the base, and
 * later ones the streams before brought that the source took before this stream's top (a
 * differential: each level 1 on the level 0, the one before deleted by retention). No later
 * stream finds them.
 */
function deletedAtSource(h: StreamHeader, known: Map<number, Known>): Set<number> {
  if (!h.retained || h.base === null) return new Set();
  const keep = new Set([...h.retained.map((x) => x.id), ...h.snapshots.map((x) => x.id), h.base.id]);
  return new Set([...known.keys()].filter((id) => !keep.has(id) && (id <= h.base!.id || id < h.top.id)));
}
