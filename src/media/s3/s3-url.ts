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
  if (bucket === '') throw new InvalidInputError(`${spec}: names no bucket`, 'give s3://BUCKET/PREFIX/NAME');
  // S3's naming rules, checked here: a store answers a name it cannot hold as a missing bucket (exit 3)
  const bad = bucketNameProblem(bucket);
  if (bad) throw new InvalidInputError(`${spec}: "${bucket}" is not a valid bucket name: ${bad}`, 'a bucket name is 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit');
  // S3's limit on an object key (the store refuses a longer one with a bare HTTP 400)
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > 1024) throw new InvalidInputError(`s3://${bucket}/${key.slice(0, 40)}...: the object key is ${bytes} bytes long, and S3 takes at most 1024`, 'give a shorter PREFIX/NAME');
  return { bucket, key, prefix: key === '' || key.endsWith('/') };
}

export function formatS3Url(bucket: string, key: string): string {
  return `${S3_SCHEME}${bucket}/${key}`;
}

/** Why `bucket` breaks S3's bucket naming rules, or null. */
function bucketNameProblem(bucket: string): string | null {
  if (bucket.length < 3 || bucket.length > 63) return `${bucket.length} characters long`;
  const other = bucket.match(/[^a-z0-9.-]/);
  if (other) return /[A-Z]/.test(other[0]) ? 'it has uppercase letters' : `it has ${JSON.stringify(other[0])}`;
  if (!/^[a-z0-9].*[a-z0-9]$/.test(bucket)) return 'it does not start and end with a letter or digit';
  if (bucket.includes('..')) return 'it has two dots in a row';
  if (/^\d+\.\d+\.\d+\.\d+$/.test(bucket)) return 'it is an IP address';
  return null;
}
