// s3://BUCKET/KEY names an object; s3://BUCKET/PREFIX/ (ending in "/") or s3://BUCKET
// names every object under a prefix (for reading: catalog rebuild, verify).
import { InvalidInputError } from '../../core/errors.js';

export const S3_SCHEME = 's3://';

export interface S3Url {
  bucket: string;
  /** The object's key, or the prefix ("" or ending in "/") when `prefix` is true. */
  key: string;
  prefix: boolean;
}

export function isS3Spec(spec: string): boolean {
  return spec.startsWith(S3_SCHEME);
}

export function parseS3Url(spec: string): S3Url {
  const rest = spec.slice(S3_SCHEME.length);
  const slash = rest.indexOf('/');
  const bucket = slash < 0 ? rest : rest.slice(0, slash);
  const key = slash < 0 ? '' : rest.slice(slash + 1);
  if (!/^[a-z0-9][a-z0-9.\-_]{1,254}$/i.test(bucket)) throw new InvalidInputError(`${spec}: not a bucket name`, 'give s3://BUCKET/PREFIX/NAME');
  // S3's limit on an object key (the store refuses a longer one with a bare HTTP 400)
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > 1024) throw new InvalidInputError(`s3://${bucket}/${key.slice(0, 40)}...: the object key is ${bytes} bytes long, and S3 takes at most 1024`, 'give a shorter PREFIX/NAME');
  return { bucket, key, prefix: key === '' || key.endsWith('/') };
}

export function formatS3Url(bucket: string, key: string): string {
  return `${S3_SCHEME}${bucket}/${key}`;
}
