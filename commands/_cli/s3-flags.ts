// The flags of every command that reads or writes s3:// objects (dump, restore, verify,
// catalog rebuild). Credentials and region are never flags: they come the AWS SDK's
// standard ways (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE and ~/.aws/config,
// AWS_REGION).
import { Flags } from '@oclif/core';
import type { S3Options } from '../../src/media/s3/index.js';
import { isS3Spec } from '../../src/media/s3/s3-url.js';
import { UsageError } from '../../src/core/errors.js';

const helpGroup = 'S3';

export const s3Flags = {
  's3-endpoint': Flags.string({
    helpValue: 'URL',
    description: 'For s3:// URLs: an S3-compatible store (Ceph radosgw, MinIO), e.g. http://127.0.0.1:7480 [default: AWS_ENDPOINT_URL, then (restore --as-of) the endpoint the catalog records with each dump, then AWS]. The catalog records the endpoint a dump or catalog rebuild used (never credentials). Refused (2) when no s3:// object is given, except with restore --as-of.',
    helpGroup,
  }),
  's3-path-style': Flags.boolean({
    description: 'For s3:// URLs: path-style addressing (http://HOST/BUCKET/KEY), which most S3-compatible stores need [default: IMGSTREAM_S3_PATH_STYLE=1, then (restore --as-of, with the recorded endpoint) as the catalog records it]. Refused (2) when no s3:// object is given, except with restore --as-of.',
    helpGroup,
  }),
};

export function s3Options(flags: { 's3-endpoint'?: string; 's3-path-style'?: boolean }): S3Options {
  return {
    endpoint: flags['s3-endpoint'],
    ...(flags['s3-path-style'] ? { pathStyle: true } : {}),
  };
}

/**
 * The S3 flags given where nothing is on S3 (no s3:// among `specs`): a mistake (a
 * forgotten s3:// prefix), never ignored, as the tape flags with a target that is no tape.
 */
export function refuseS3FlagsWithout(flags: { 's3-endpoint'?: string; 's3-path-style'?: boolean }, specs: string[], what: string): void {
  if (specs.some(isS3Spec)) return;
  const given = [flags['s3-endpoint'] !== undefined ? '--s3-endpoint' : null, flags['s3-path-style'] ? '--s3-path-style' : null].filter((f) => f !== null);
  if (given.length === 0) return;
  throw new UsageError(`${given.join(', ')} ${given.length > 1 ? 'are' : 'is'} for s3:// objects, and none is given (${what})`, 'give the object as s3://BUCKET/KEY, or leave the S3 flags out');
}
