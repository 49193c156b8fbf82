// One S3 client per medium, configured the standard ways: credentials and region from
// the environment, AWS_PROFILE and the shared config files (the SDK's default chain);
// the endpoint from --s3-endpoint or AWS_ENDPOINT_URL (S3-compatible stores such as
// Ceph's radosgw or MinIO); path-style addressing (http://HOST/BUCKET/KEY) when asked.
// SDK failures become the project's errors, one line each.
import type { S3Client } from '@aws-sdk/client-s3';
import { s3Sdk } from './sdk.js';
import { s3Place } from './s3-place.js';
import { missingProfile } from './s3-profile.js';
import { AuthError, ImgstreamError, InvalidInputError, IoError, NetworkError, NotFoundError } from '../../core/errors.js';

export interface S3Options {
  /** http(s)://HOST[:PORT] of an S3-compatible store; default: AWS_ENDPOINT_URL, then AWS. */
  endpoint?: string;
  /** Address buckets as http://HOST/BUCKET instead of http://BUCKET.HOST. */
  pathStyle?: boolean;
  /** Bytes per ranged GET (restore, verify) and requests in flight. */
  readChunk?: number;
  readAhead?: number;
  /** Smallest multipart part, and parts uploaded at once. */
  partSize?: number;
  uploads?: number;
}

export function s3Client(opts: S3Options): S3Client {
  const { endpoint, pathStyle } = s3Place(opts);
  // the SDK warns on stderr that its releases after January 2027 need Node 22: this
  // package pins a release that supports the Node it declares (package.json engines)
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
  return new (s3Sdk().S3Client)({
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle: pathStyle,
    // region: the SDK's chain (AWS_REGION, the profile); an S3-compatible store rarely cares
    region: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? (endpoint ? 'us-east-1' : undefined),
    maxAttempts: 3,
    // the SDK's own warnings (e.g. 9 lines when AWS_PROFILE and access keys are both set)
    // are not written to stderr: an error is one line, and says what matters (s3Error)
    logger: QUIET,
    // a store that takes the connection and never answers (a full Ceph cluster holds its
    // requests) must fail, not hang a dump or a restore for ever: after S3_IDLE_MS without
    // a byte either way, the request fails (and is tried again, up to maxAttempts)
    requestHandler: { connectionTimeout: S3_CONNECT_MS, requestTimeout: s3IdleMs(), throwOnRequestTimeout: true },
  });
}

const S3_CONNECT_MS = 10_000;
const QUIET = { trace() {}, debug() {}, info() {}, warn() {}, error() {} };
const DEFAULT_IDLE_S = 60;

/** IMGSTREAM_S3_TIMEOUT_S: seconds a request may go without a byte either way (default 60). */
function s3IdleMs(): number {
  return s3Tuning('IMGSTREAM_S3_TIMEOUT_S', 1, 3600, DEFAULT_IDLE_S) * 1000;
}

/**
 * A whole number from the S3 tuning variable `name` (IMGSTREAM_S3_*), between min and max,
 * or `fallback` when it is not set; anything else is refused in one line (exit 4).
 */
export function s3Tuning(name: string, min: number, max: number, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!/^\s*\d+\s*$/.test(raw) || !Number.isSafeInteger(n) || n < min || n > max) {
    throw new InvalidInputError(`${name}=${raw} is not a whole number from ${min} to ${max}`, `unset it for the default (${fallback}), or give one in that range`);
  }
  return n;
}

interface SdkError {
  name?: string;
  code?: string;
  message?: string;
  $metadata?: { httpStatusCode?: number };
}

/** An SDK failure as a one-line project error naming what was being done to which object. */
export function s3Error(err: unknown, what: string, doing: string): ImgstreamError {
  if (err instanceof ImgstreamError) return err;
  const e = (err ?? {}) as SdkError;
  const name = e.name ?? e.code ?? 'Error';
  const status = e.$metadata?.httpStatusCode;
  switch (name) {
    case 'CredentialsProviderError': {
      const profile = missingProfile();
      if (profile !== null) return new AuthError(`${what}: ${doing}: AWS_PROFILE names the profile "${profile}", which neither ~/.aws/credentials nor ~/.aws/config defines`, 'name a profile they define, or unset AWS_PROFILE to use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY');
      return new AuthError(`${what}: ${doing}: no credentials found`, 'set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials');
    }
    case 'InvalidAccessKeyId':
    case 'SignatureDoesNotMatch':
    case 'AccessDenied':
    case 'ExpiredToken':
    case 'InvalidToken':
      return new AuthError(`${what}: ${doing}: ${name} (the store refused the credentials)`, 'check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE');
    case 'NoSuchBucket':
      return new NotFoundError(`${what}: the bucket does not exist`, 'create it first, or check the name and --s3-endpoint');
    case 'NoSuchKey':
    case 'NotFound':
      return new NotFoundError(`${what}: no such object`, 'check the name (catalog rebuild --from s3://BUCKET/PREFIX/ lists what is there)');
    case 'NoSuchUpload':
      return new IoError(`${what}: ${doing}: the upload was aborted on the server`, 'run the dump again');
  }
  // the SDK found no region (no AWS_REGION, no profile naming one): its own text says no more
  if (/^Region is missing/.test(e.message ?? '')) return new InvalidInputError(`${what}: ${doing}: no AWS region is set`, 'set AWS_REGION (e.g. us-east-1), or a region in the profile AWS_PROFILE names');
  const code = (e as { code?: string }).code ?? (err as { cause?: { code?: string } })?.cause?.code;
  if (code && /^(ECONNREFUSED|ECONNRESET|EPIPE|ETIMEDOUT|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH)$/.test(code)) {
    if (code === 'ETIMEDOUT') return new NetworkError(`${what}: ${doing}: ETIMEDOUT: the object store did not answer in time, or cannot be reached`, 'check --s3-endpoint or AWS_ENDPOINT_URL, and that the store is up and has room; IMGSTREAM_S3_TIMEOUT_S sets how long a request may wait for an answer');
    return new NetworkError(`${what}: ${doing}: ${code}: the object store cannot be reached`, 'check --s3-endpoint or AWS_ENDPOINT_URL, and that the store is up');
  }
  if (name === 'TimeoutError' || name === 'RequestTimeout' || code === 'ECONNABORTED' || /timed? ?out/i.test(e.message ?? '')) {
    return new NetworkError(`${what}: ${doing}: the object store did not answer in time (a store that is down, overloaded or out of space holds requests)`, 'check that the store is up and has room; IMGSTREAM_S3_TIMEOUT_S sets how long a request may wait for an answer');
  }
  // TLS: an https endpoint that speaks http, or a certificate not trusted
  if (code && (code === 'EPROTO' || /^(ERR_SSL_|ERR_TLS_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT)/.test(code))) {
    return new NetworkError(`${what}: ${doing}: the TLS connection to the store failed (${code})`, 'check the scheme of --s3-endpoint or AWS_ENDPOINT_URL (http:// or https://) and that the store\'s certificate is trusted (NODE_EXTRA_CA_CERTS)');
  }
  if (status === 403) return new AuthError(`${what}: ${doing}: access denied (HTTP 403)`, 'check the credentials and the bucket policy');
  if (status === 404) return new NotFoundError(`${what}: ${doing}: not found (HTTP 404)`);
  const msg = (e.message ?? String(err)).split('\n')[0];
  return new IoError(`${what}: ${doing}: ${name}${status ? ` (HTTP ${status})` : ''}: ${msg}`);
}
