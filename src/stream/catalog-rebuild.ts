// Rebuilds catalog records from the media alone: every stream describes itself (header)
// and proves it is complete (trailer), so reading the streams back gives the records.
// Streams read from a pipe (tape files piped in: tape:/dev/stdin) are recorded as read
// from one (kind "stdin"), not at the pipe's path: nothing can be read back from there.
import fs from 'node:fs';
import type { DumpRecord } from '../catalog/catalog.js';
import { recordProblem } from '../catalog/record-check.js';
import { isDescriptorPath } from '../catalog/record-place.js';
import type { MediaPosition, StreamSource } from '../media/medium.js';
import { noProgress, type Progress } from '../core/progress.js';
import { type ErrorCode, ImgstreamError } from '../core/errors.js';
import { readImageStream } from './stream-reader.js';
import type { StreamHeader } from '../format/image-stream.js';

export interface RebuildResult {
  records: DumpRecord[];
  /** `code`: the error's, when it is imgstream's (not-a-volume: not a stream, or of a format version not read). */
  skipped: Array<{ stream: string; reason: string; code?: ErrorCode }>;
  /** What the media lack that was read past (a tape file gone from a tape): the dumps whole on them are recorded all the same. */
  missing: Error[];
}

/** Where a record says a stream read at `p` is: a tape "device" that is a pipe (or this process's stdin) is no place. */
function recordedPosition(p: MediaPosition): MediaPosition {
  if (p.kind !== 'tape' || p.tapeFile !== undefined) return p;
  if (/^\/dev\/(?:stdin|fd\/0)$|^\/proc\/(?:self|thread-self)\/fd\/0$/.test(p.location)) return { kind: 'stdin', location: '-' };
  if (isDescriptorPath(p.location)) return { kind: 'stdin', location: p.location };
  try {
    const st = fs.statSync(p.location);
    if (st.isFIFO() || st.isSocket()) return { kind: 'stdin', location: p.location };
  } catch {
    /* gone meanwhile: as read */
  }
  return p; // a tape drive: read where it is positioned
}

export async function recordsFromMedia(sources: StreamSource[], progress: Progress = noProgress): Promise<RebuildResult> {
  const out: RebuildResult = { records: [], skipped: [], missing: [] };
  for (const src of sources) {
    for await (const s of src.streams()) {
      if (s.givenUp !== undefined) {
        out.skipped.push({ stream: s.name, reason: s.givenUp });
        continue;
      }
      let header: StreamHeader | null = null;
      try {
        for await (const rec of readImageStream(s.bytes, s.name, undefined, { withoutKey: 'headers' })) {
          if (rec.type === 'header') {
            header = rec.header;
            progress.start(`reading ${s.name}`, header.image.bytes, 'bytes');
          } else if (rec.type === 'data') progress.update(0);
          else if (rec.type === 'trailer' && header) {
            const record: DumpRecord = {
              id: header.streamId,
              volume: { uuid: header.volume.uuid, path: null },
              level: header.level,
              base: header.base ? { id: header.base.id, name: header.base.name, generation: header.base.generation, ...(header.base.createdMs !== undefined ? { createdMs: header.base.createdMs } : {}) } : null,
              top: { id: header.top.id, name: header.top.name, generation: header.top.generation, createdMs: header.snapshots.find((x) => x.id === header!.top.id)?.createdMs },
              snapshots: header.snapshots.map((x) => x.name),
              expression: header.expression,
              date: header.created,
              finished: header.created,
              media: recordedPosition(s.position),
              blocks: rec.trailer.dataBlocks + rec.trailer.mapDeltaNodes,
              dataBytes: rec.trailer.dataBytes,
              streamBytes: rec.streamBytes,
              sha256: rec.trailer.sha256,
              status: 'complete',
              ...(header.encryption ? { encrypted: true as const } : {}),
            };
            // a catalog holding it would be refused: the stream is named among those skipped
            const bad = recordProblem(record);
            if (bad) out.skipped.push({ stream: s.name, reason: `its header does not make a catalog record: ${bad}` });
            else out.records.push(record);
          }
        }
      } catch (err) {
        // a medium read the wrong way (a multiplexed tape file from a pipe) is no damage of the stream: said as it is
        if (err instanceof ImgstreamError && err.code === 'usage') throw err;
        // the reason after the stream's name, which the error begins with (the line names it once)
        const message = (err as Error).message;
        const reason = message.startsWith(`${s.name}: `) ? message.slice(s.name.length + 2) : message;
        out.skipped.push({ stream: s.name, reason, ...(err instanceof ImgstreamError ? { code: err.code } : {}) });
      } finally {
        progress.stop();
      }
    }
    out.missing.push(...(src.missing?.() ?? []));
  }
  return out;
}
