// A dump into an object: a multipart upload, created when the target opens, fed parts as
// the stream is written (several uploaded at once), completed by finish() after the last
// byte (the trailer): until then no object exists under the name, and abort() aborts the
// upload, so an aborted dump leaves nothing (when the store cannot be reached to abort it,
// abort() says the upload may remain, for the dump's error). A dump killed part way leaves
// an unfinished upload (invisible to readers, but billed): the next dump to the same name
// aborts it once it has gone a while without a part, never a live one (see
// s3-abandoned-uploads.ts).
//
// Parts start at partSize (8 MiB) and double every 1000 parts, so the 10,000 parts S3
// allows hold any volume (8 MiB parts carry 8 GB, the next 1000 16 GB, ...), while memory
// stays at (uploads + 1) parts. A stream smaller than one part goes up in one PutObject.
import type { CompletedPart } from '@aws-sdk/client-s3';
import { s3Sdk } from './sdk.js';
import { ExistsError, InvalidInputError, NetworkError, NotFoundError } from '../../core/errors.js';
import type { MediaPosition, StreamTarget } from '../medium.js';
import { s3Client, s3Error, s3Tuning, type S3Options } from './s3-client.js';
import { recordedPlace, s3Place } from './s3-place.js';
import { formatS3Url, parseS3Url } from './s3-url.js';
import { abandonedAfterMs, abortAbandonedUploads, unfinishedUploads } from './s3-abandoned-uploads.js';

const MiB = 1 << 20;
export const DEFAULT_PART_SIZE = 8 * MiB;
export const DEFAULT_UPLOADS = 4;
const MAX_PART = 5 * 1024 * MiB;
const PARTS_PER_SIZE = 1000;

export interface S3TargetOptions extends S3Options {
  /** Replace an object already under the name. */
  force?: boolean;
}

/** Size of part `n` (1-based): doubles every PARTS_PER_SIZE parts. */
export function partSizeFor(n: number, base: number): number {
  return Math.min(MAX_PART, base * 2 ** Math.floor((n - 1) / PARTS_PER_SIZE));
}

export interface S3Target extends StreamTarget {
  open(): Promise<void>;
}

export function s3Target(spec: string, opts: S3TargetOptions = {}): S3Target {
  const url = parseS3Url(spec);
  if (url.prefix) throw new InvalidInputError(`${spec}: names a prefix, not an object`, 'give s3://BUCKET/PREFIX/NAME');
  const { bucket, key } = url;
  const location = formatS3Url(bucket, key);
  const what = location;
  const base = Math.max(5 * MiB, opts.partSize ?? s3Tuning('IMGSTREAM_S3_PART_MIB', 5, 1024, DEFAULT_PART_SIZE / MiB) * MiB);
  const uploads = opts.uploads ?? s3Tuning('IMGSTREAM_S3_UPLOADS', 1, 64, DEFAULT_UPLOADS);
  // without --force the object must not exist when it is written: another dump to the same
  // name that got there first is not replaced (a store that ignores the condition on
  // CompleteMultipartUpload, as Ceph before Squid, leaves only the check when the dump began)
  const onlyNew = opts.force ? {} : { IfNoneMatch: '*' };
  const client = s3Client(opts);
  const idleMs = abandonedAfterMs(); // checked (exit 4) before anything is sent
  const recorded = recordedPlace(s3Place(opts)); // for the catalog: which store, never credentials

  let opening: Promise<void> | null = null;
  let uploadId: string | null = null;
  let failed: Error | null = null;
  let finished = false;
  let partNo = 1;
  let part: Buffer | null = null;
  let filled = 0;
  const done: CompletedPart[] = [];
  const inFlight = new Set<Promise<void>>();
  // full parts come back once uploaded and are filled again: memory stays at (uploads + 1) parts, never garbage waiting for a GC
  const spare: Buffer[] = [];
  const takePart = (size: number): Buffer => {
    while (spare.length > 0) {
      const b = spare.pop()!;
      if (b.length === size) return b;
    }
    return Buffer.allocUnsafe(size);
  };

  const fail = (err: unknown, doing: string): Error => {
    if (!failed) {
      const e = err as { name?: string; code?: string; cause?: { code?: string } } | null;
      if (e?.name === 'NoSuchUpload') lost = { doing, sure: true };
      // a store that drops the upload while a part is sent may close the connection instead of answering
      else if (/^(EPIPE|ECONNRESET)$/.test(e?.code ?? e?.cause?.code ?? '')) lost = { doing, sure: false };
    }
    failed ??= s3Error(err, what, doing);
    return failed;
  };
  // this dump's upload was aborted by someone else: another writer of the name, or not
  // (a lifecycle rule, an administrator); it is no failure of this machine's I/O (exit 10)
  let lost: { doing: string; sure: boolean } | null = null;
  const uploadGone = async (): Promise<boolean> => {
    try {
      await client.send(new (s3Sdk().ListPartsCommand)({ Bucket: bucket, Key: key, UploadId: uploadId!, MaxParts: 1 }));
      return false;
    } catch (err) {
      return uploadMissing(err);
    }
  };
  let replacing = false; // --force over an object that exists: a dump stopped before completion keeps it
  const failure = async (): Promise<Error> => {
    if (lost === null) return failed!;
    const { doing, sure } = lost;
    lost = null;
    if (!sure && (uploadId === null || !(await uploadGone()))) return failed!;
    let other = false;
    try {
      other = (await unfinishedUploads(client, bucket, key, uploadId ?? undefined)).length > 0 || (await objectExists());
    } catch {
      /* the store cannot tell: said without it */
    }
    failed = other
      ? new ExistsError(`${what}: ${doing}: this dump's upload was aborted on the server while another writer wrote the same name: not stored`, 'dump to another name, or run it again once the other writer is done (without --force an existing object is kept)')
      : new NetworkError(`${what}: ${doing}: this dump's upload was aborted on the server by someone else (a lifecycle rule, an administrator): not stored`, 'run the dump again');
    return failed;
  };
  const anotherWriterFirst = () => new ExistsError(`${what}: created by another writer while this dump ran (another dump to the same name finished first): not replaced`, 'dump to another name, or pass --force to replace it');
  const objectExists = async (): Promise<boolean> => {
    try {
      await client.send(new (s3Sdk().HeadObjectCommand)({ Bucket: bucket, Key: key }));
      return true;
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404) return false;
      throw s3Error(err, what, 'checking the name');
    }
  };

  const doOpen = async () => {
    try {
      await client.send(new (s3Sdk().HeadBucketCommand)({ Bucket: bucket }));
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NotFound' || e.name === 'NoSuchBucket' || e.$metadata?.httpStatusCode === 404) {
        throw new NotFoundError(`${what}: the bucket ${bucket} does not exist`, 'create it first, or check the name and --s3-endpoint');
      }
      throw s3Error(err, what, 'checking the bucket');
    }
    const existing = await objectExists();
    if (existing && !opts.force) throw new ExistsError(`${what}: already exists`, 'pass --force to replace it');
    replacing = existing;
    try {
      // a killed dump's upload, never a live one: a dump racing to the name is settled at completion
      await abortAbandonedUploads(client, bucket, key, idleMs);
      const r = await client.send(new (s3Sdk().CreateMultipartUploadCommand)({ Bucket: bucket, Key: key, ContentType: 'application/octet-stream' }));
      uploadId = r.UploadId ?? null;
    } catch (err) {
      throw s3Error(err, what, 'starting the upload');
    }
    if (!uploadId) throw s3Error(new Error('no upload id in the answer'), what, 'starting the upload');
  };

  const open = async () => {
    opening ??= doOpen().catch((err) => {
      throw fail(err, 'opening');
    });
    return opening;
  };

  const send = async (body: Buffer, n: number) => {
    const p = client
      .send(new (s3Sdk().UploadPartCommand)({ Bucket: bucket, Key: key, UploadId: uploadId!, PartNumber: n, Body: body, ContentLength: body.length }))
      .then(
        (r) => {
          done.push({ PartNumber: n, ETag: r.ETag });
        },
        (err) => {
          fail(err, `uploading part ${n}`);
        },
      )
      .finally(() => {
        inFlight.delete(p);
        if (body.byteOffset === 0 && body.length === body.buffer.byteLength && spare.length <= uploads) spare.push(body);
      });
    inFlight.add(p);
    while (inFlight.size >= uploads && !failed) await Promise.race(inFlight);
    if (failed) throw await failure();
  };

  return {
    description: `object ${location}`,
    open,
    async write(data) {
      if (failed) throw await failure();
      if (finished) throw new InvalidInputError(`${what}: written after finish`);
      await open();
      let at = 0;
      while (at < data.length) {
        part ??= takePart(partSizeFor(partNo, base));
        const n = Math.min(part.length - filled, data.length - at);
        data.copy(part, filled, at, at + n);
        filled += n;
        at += n;
        if (filled === part.length) {
          const full = part;
          part = null;
          filled = 0;
          await send(full, partNo++);
        }
      }
    },
    async finish(): Promise<MediaPosition> {
      if (failed) throw await failure();
      await open();
      finished = true;
      try {
        if (partNo === 1) {
          // smaller than one part: one PutObject, and no multipart upload left behind
          const body = part ? part.subarray(0, filled) : Buffer.alloc(0);
          await client.send(new (s3Sdk().PutObjectCommand)({ Bucket: bucket, Key: key, Body: body, ContentLength: body.length, ...onlyNew }));
          await client.send(new (s3Sdk().AbortMultipartUploadCommand)({ Bucket: bucket, Key: key, UploadId: uploadId! })).catch(() => undefined);
        } else {
          if (filled > 0) await send(part!.subarray(0, filled), partNo++);
          part = null;
          await Promise.all(inFlight);
          if (failed) throw await failure();
          // a store that ignores If-None-Match on the completion (Ceph before Squid) would
          // replace an object another dump stored meanwhile: looked for once more first
          if (!opts.force && (await objectExists())) throw anotherWriterFirst();
          done.sort((a, b) => a.PartNumber! - b.PartNumber!);
          await client.send(new (s3Sdk().CompleteMultipartUploadCommand)({ Bucket: bucket, Key: key, UploadId: uploadId!, MultipartUpload: { Parts: done }, ...onlyNew }));
        }
      } catch (err) {
        const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412) throw fail(anotherWriterFirst(), 'completing the upload');
        if (err instanceof ExistsError) throw fail(err, 'completing the upload');
        fail(err, 'completing the upload');
        throw await failure();
      }
      return { kind: 's3', location, ...recorded };
    },
    kept: () => (replacing ? `the existing object ${location} was kept, not replaced` : null),
    async abort(): Promise<string | void> {
      failed ??= new InvalidInputError(`${what}: the dump was aborted`);
      part = null;
      await opening?.catch(() => undefined);
      await Promise.allSettled(inFlight);
      if (!uploadId) return;
      const id = uploadId;
      uploadId = null;
      try {
        await client.send(new (s3Sdk().AbortMultipartUploadCommand)({ Bucket: bucket, Key: key, UploadId: id }));
      } catch (err) {
        if ((err as { name?: string }).name === 'NoSuchUpload') return; // gone already
        // the store went away with the dump (or refuses): its parts stay until the next dump to the name
        const why = s3Error(err, what, 'aborting the upload').message.replace(`${what}: aborting the upload: `, '').replace(/ \(.*\)$/, '').replace(/^([A-Z][A-Z_]+): .*$/, '$1');
        return `aborting its multipart upload failed too (${why}): an unfinished multipart upload of ${location} may remain, stored and billed, until a dump to ${location} once it has gone ${idleText(idleMs)} without a part, which aborts it`;
      }
    },
  };
}

/** 900000 -> "15 min", 30000 -> "30 s". */
function idleText(ms: number): string {
  return ms >= 120_000 ? `${Math.round(ms / 60_000)} min` : `${Math.round(ms / 1000)} s`;
}

/** Whether a request on an upload failed because the upload is gone (Ceph answers ListParts of one with NoSuchKey). */
function uploadMissing(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e.name === 'NoSuchUpload' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404;
}
