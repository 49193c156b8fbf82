// Unfinished multipart uploads of one name, and which of them a dump may abort. A dump
// killed part way (kill -9, a crash, a lost machine) leaves its upload behind, stored
// and billed; the next dump to the same name cleans it up. But an unfinished upload is
// also what a dump still running looks like: aborting every one made a second dump to a
// name kill the first one's live upload (it failed "the upload was aborted on the
// server") instead of the race being settled at completion (If-None-Match, exit 6). So
// only an upload that is evidently dead is aborted: no part uploaded (or, with no parts,
// not started) for IMGSTREAM_S3_ABANDONED_S seconds (default 15 minutes, well beyond a
// request's timeout tried three times); a younger one is left to its writer.
import type { S3Client } from '@aws-sdk/client-s3';
import { s3Sdk } from './sdk.js';
import { s3Tuning } from './s3-client.js';

const DEFAULT_ABANDONED_S = 15 * 60;

/** IMGSTREAM_S3_ABANDONED_S: how long an unfinished upload goes without a part before it counts as abandoned (ms). */
export function abandonedAfterMs(): number {
  return s3Tuning('IMGSTREAM_S3_ABANDONED_S', 0, 30 * 24 * 3600, DEFAULT_ABANDONED_S) * 1000;
}

export interface UnfinishedUpload {
  uploadId: string;
  /** When it last showed life: its newest part's LastModified, else when it was started. */
  lastActive: Date | null;
}

/** The unfinished multipart uploads of exactly `key`, with when each last showed life. */
export async function unfinishedUploads(client: S3Client, bucket: string, key: string, except?: string): Promise<UnfinishedUpload[]> {
  const out: UnfinishedUpload[] = [];
  let keyMarker: string | undefined;
  let uploadIdMarker: string | undefined;
  for (;;) {
    const r = await client.send(new (s3Sdk().ListMultipartUploadsCommand)({ Bucket: bucket, Prefix: key, KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
    for (const u of r.Uploads ?? []) {
      if (u.Key !== key || !u.UploadId || u.UploadId === except) continue;
      out.push({ uploadId: u.UploadId, lastActive: await newestPart(client, bucket, key, u.UploadId, u.Initiated ?? null) });
    }
    if (!r.IsTruncated) return out;
    keyMarker = r.NextKeyMarker;
    uploadIdMarker = r.NextUploadIdMarker;
  }
}

/** The newest LastModified of an upload's parts, or `initiated` when it has none. */
async function newestPart(client: S3Client, bucket: string, key: string, uploadId: string, initiated: Date | null): Promise<Date | null> {
  let newest = initiated;
  let marker: string | undefined;
  for (;;) {
    let r;
    try {
      r = await client.send(new (s3Sdk().ListPartsCommand)({ Bucket: bucket, Key: key, UploadId: uploadId, PartNumberMarker: marker }));
    } catch (err) {
      const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
      if (e.name === 'NoSuchUpload' || e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return newest; // completed or aborted meanwhile (Ceph: NoSuchKey)
      throw err;
    }
    for (const p of r.Parts ?? []) if (p.LastModified && (newest === null || p.LastModified > newest)) newest = p.LastModified;
    if (!r.IsTruncated || r.NextPartNumberMarker === undefined) return newest;
    marker = r.NextPartNumberMarker;
  }
}

/**
 * Aborts the unfinished uploads of `key` that have gone `idleMs` without a part (left by
 * killed dumps); younger ones are another writer's, still running, and left alone.
 * Returns how many were aborted and how many left.
 */
export async function abortAbandonedUploads(client: S3Client, bucket: string, key: string, idleMs = abandonedAfterMs(), now = Date.now()): Promise<{ aborted: number; left: number }> {
  let aborted = 0;
  let left = 0;
  for (const u of await unfinishedUploads(client, bucket, key)) {
    if (u.lastActive !== null && now - u.lastActive.getTime() < idleMs) {
      left++;
      continue;
    }
    try {
      await client.send(new (s3Sdk().AbortMultipartUploadCommand)({ Bucket: bucket, Key: key, UploadId: u.uploadId }));
      aborted++;
    } catch (err) {
      if ((err as { name?: string }).name !== 'NoSuchUpload') throw err; // gone meanwhile
    }
  }
  return { aborted, left };
}
