// Streams read back from objects: s3://BUCKET/KEY is one stream; s3://BUCKET/PREFIX/ is
// every object under the prefix, in key order (catalog rebuild, verify). An object is
// read with ranged GETs of readChunk bytes, readAhead of them in flight, delivered in
// order; each GET names the ETag the object had when reading began, so an object replaced
// meanwhile is refused instead of read half old, half new. A short answer is refused.
// Bodies are copied into recycled page-aligned buffers as they arrive (ReadPool).
import type { S3Client } from '@aws-sdk/client-s3';
import { s3Sdk } from './sdk.js';
import { CorruptError, NotFoundError } from '../../core/errors.js';
import type { SourceStream, StreamSource } from '../medium.js';
import { ReadPool } from '../read-pool.js';
import { s3Client, s3Error, s3Tuning, type S3Options } from './s3-client.js';
import { recordedPlace, s3Place } from './s3-place.js';
import { formatS3Url, parseS3Url } from './s3-url.js';

const MiB = 1 << 20;
export const DEFAULT_READ_CHUNK = 4 * MiB;
export const DEFAULT_READ_AHEAD = 4;

/**
 * The bytes of one object: ranged GETs of `chunk` bytes, `ahead` in flight, each body
 * copied as it arrives into a page-aligned buffer of the source's own (no second copy of
 * a whole part, as transformToByteArray makes), handed on in order. The consumer gives
 * buffers back (recycle) once written, and the next GETs fill them: a restore allocates
 * ahead + a few chunks in all instead of a fresh one per GET.
 */
async function objectBytesFrom(client: S3Client, bucket: string, key: string, opts: S3Options, take: () => Promise<Buffer>, known?: ObjectHead): Promise<AsyncIterable<Buffer>> {
  const what = formatS3Url(bucket, key);
  const { size, etag } = known ?? (await headObject(client, bucket, key));
  const chunk = readChunk(opts);
  const ahead = readAhead(opts);
  const get = async (from: number): Promise<Buffer> => {
    const to = Math.min(size, from + chunk) - 1;
    const want = to - from + 1;
    const buf = await take(); // waits while the consumer holds them all
    let got = 0;
    try {
      const r = await client.send(new (s3Sdk().GetObjectCommand)({ Bucket: bucket, Key: key, Range: `bytes=${from}-${to}`, IfMatch: etag }));
      for await (const piece of r.Body as AsyncIterable<Uint8Array>) {
        if (got + piece.length > want) {
          (r.Body as { destroy?: () => void }).destroy?.();
          throw new CorruptError(`${what}: bytes ${from}-${to}: the store answered more than ${want} bytes`, 'the object is changing');
        }
        buf.set(piece, got);
        got += piece.length;
      }
    } catch (err) {
      if (err instanceof CorruptError) throw err;
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'PreconditionFailed' || e.$metadata?.httpStatusCode === 412) throw new CorruptError(`${what}: the object changed while it was being read`, 'read it again');
      throw s3Error(err, what, `reading bytes ${from}-${to}`);
    }
    if (got !== want) throw new CorruptError(`${what}: bytes ${from}-${to}: the store answered ${got} bytes`, 'the object is truncated or changing');
    return got === buf.length ? buf : buf.subarray(0, got);
  };
  return {
    async *[Symbol.asyncIterator]() {
      const pending: Promise<Buffer>[] = [];
      let next = 0;
      const fill = () => {
        while (pending.length < ahead && next < size) {
          const p = get(next);
          p.catch(() => undefined); // seen when awaited; not unhandled if the reader stops early
          pending.push(p);
          next += chunk;
        }
      };
      fill();
      while (pending.length > 0) {
        const buf = await pending.shift()!;
        fill();
        yield buf;
      }
    },
  };
}

interface ObjectHead {
  size: number;
  etag: string | undefined;
}

/** The object's size and ETag; a missing object or bucket, refused credentials, an unreachable store are their errors (3, 11, 12). */
async function headObject(client: S3Client, bucket: string, key: string): Promise<ObjectHead> {
  const what = formatS3Url(bucket, key);
  try {
    const h = await client.send(new (s3Sdk().HeadObjectCommand)({ Bucket: bucket, Key: key }));
    return { size: h.ContentLength ?? 0, etag: h.ETag };
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404) throw new NotFoundError(`${what}: no such object (or no such bucket)`, 'check the name; s3://BUCKET/PREFIX/ reads every object under a prefix');
    throw s3Error(err, what, 'opening the stream');
  }
}

const readChunk = (opts: S3Options) => Math.ceil(Math.max(64 << 10, opts.readChunk ?? s3Tuning('IMGSTREAM_S3_READ_KIB', 64, 256 * 1024, DEFAULT_READ_CHUNK / 1024) * 1024) / 4096) * 4096;
const readAhead = (opts: S3Options) => Math.max(1, opts.readAhead ?? s3Tuning('IMGSTREAM_S3_READ_AHEAD', 1, 64, DEFAULT_READ_AHEAD));

function lazy(make: () => Promise<AsyncIterable<Buffer>>): AsyncIterable<Buffer> {
  return {
    async *[Symbol.asyncIterator]() {
      yield* await make();
    },
  };
}

/**
 * Whether the object `spec` names is there (restore --as-of checks a chain before it
 * restores the first stream of it). A missing object or bucket is false; refused
 * credentials or an unreachable store are their errors.
 */
export async function s3ObjectExists(spec: string, opts: S3Options = {}): Promise<boolean> {
  const { bucket, key } = parseS3Url(spec);
  try {
    await s3Client(opts).send(new (s3Sdk().HeadObjectCommand)({ Bucket: bucket, Key: key }));
    return true;
  } catch (err) {
    const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
    if (e.name === 'NotFound' || e.name === 'NoSuchKey' || e.name === 'NoSuchBucket' || e.$metadata?.httpStatusCode === 404) return false;
    throw s3Error(err, spec, 'looking for the stream');
  }
}

export function s3Source(spec: string, opts: S3Options = {}): StreamSource {
  const url = parseS3Url(spec);
  const { bucket } = url;
  const client = s3Client(opts);
  const recorded = recordedPlace(s3Place(opts)); // catalog rebuild records which store it read
  readChunk(opts); // the tuning variables, checked (exit 4) before any request
  readAhead(opts);
  const one = (key: string, known?: ObjectHead): SourceStream => {
    const location = formatS3Url(bucket, key);
    // page-aligned (an uncompressed stream's blocks are written with direct I/O straight
    // from them): the GETs in flight, the one being read and the one before it (a record
    // spanning both); the writes from the others hold back the next GETs. (+4 instead of +2
    // measured about 8 MiB more peak RSS for no faster restore.)
    const pool = new ReadPool(readChunk(opts), readAhead(opts) + 2);
    return { name: `object ${location}`, position: { kind: 's3', location, ...recorded }, bytes: lazy(() => objectBytesFrom(client, bucket, key, opts, () => pool.take(), known)), recycle: (buf, after) => pool.recycle(buf, after) };
  };
  return {
    description: url.prefix ? `objects under ${spec}` : `object ${spec}`,
    async *streams(): AsyncGenerator<SourceStream> {
      if (!url.prefix) {
        // looked up before the stream is handed out, as a prefix is listed: a missing object,
        // refused credentials, an unreachable store are the source's errors (3, 11, 12), not a
        // stream that reads as damaged (catalog rebuild skipped it as one, exit 9 or 0)
        yield one(url.key, await headObject(client, bucket, url.key));
        return;
      }
      const keys: string[] = [];
      let token: string | undefined;
      do {
        let r;
        try {
          r = await client.send(new (s3Sdk().ListObjectsV2Command)({ Bucket: bucket, Prefix: url.key, ContinuationToken: token }));
        } catch (err) {
          throw s3Error(err, spec, 'listing the prefix');
        }
        for (const o of r.Contents ?? []) if (o.Key && !o.Key.endsWith('/')) keys.push(o.Key);
        token = r.IsTruncated ? r.NextContinuationToken : undefined;
      } while (token);
      keys.sort();
      for (const k of keys) yield one(k);
    },
  };
}
