// Verify: read streams end to end, check every checksum (reader), and the chain: one
// volume, each stream's base among the snapshots of the streams before it (or, for the
// first stream, simply named: the volume it goes onto must hold it). Writes nothing.
import { CorruptError, InvalidInputError, NotFoundError } from '../errors.js';
import type { StreamSource } from '../media/medium.js';
import { noProgress, type Progress } from '../progress.js';
import { readImageStream } from './stream-reader.js';

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
}

export async function verifyStreams(sources: StreamSource[], progress: Progress = noProgress): Promise<VerifyResult> {
  const result: VerifyResult = { ok: true, streams: [], blocks: 0, bytes: 0, needs: null };
  const known = new Map<number, { name: string; generation: number }>();
  let uuid: string | null = null;
  for (const src of sources) {
    for await (const s of src.streams()) {
      let v: VerifiedStream | null = null;
      let blockSize = 0;
      for await (const rec of readImageStream(s.bytes, s.name)) {
        if (rec.type === 'header') {
          const h = rec.header;
          if (uuid !== null && h.volume.uuid !== uuid) throw new InvalidInputError(`${s.name}: stream of another volume (${h.volume.uuid}) in the chain of ${uuid}`, 'verify each volume\'s streams separately');
          if (result.streams.length === 0) result.needs = h.base ? h.base.name : null;
          else if (h.base === null) throw new InvalidInputError(`${s.name}: a full (level ${h.level}) stream in the middle of a chain`, 'a chain is one full stream followed by incrementals');
          else {
            const k = known.get(h.base.id);
            if (!k || k.generation !== h.base.generation) throw new NotFoundError(`${s.name}: its base snapshot "${h.base.name}" is not in the streams before it`, 'give the streams in chain order: level 0 first');
          }
          uuid = h.volume.uuid;
          blockSize = h.volume.blockSize;
          v = { stream: s.name, streamId: h.streamId, volume: h.volume.uuid, level: h.level, base: h.base?.name ?? null, top: h.top.name, snapshots: h.snapshots.map((x) => x.name), blocks: 0, bytes: 0, streamBytes: 0, sha256: '', created: h.created };
          for (const x of h.snapshots) known.set(x.id, { name: x.name, generation: x.generation });
          if (h.base) known.set(h.base.id, known.get(h.base.id) ?? { name: h.base.name, generation: h.base.generation });
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
  if (result.streams.length === 0) throw new NotFoundError('no stream found in the sources given');
  return result;
}
