// The AWS SDK's S3 client, loaded the first time an s3:// medium is used. It is the
// largest thing imgstream loads (about a hundred modules, a third of a second of CPU on
// these machines), and most commands never touch object storage: importing it at the top
// made every `restore`, `dump` and `verify` start that much slower.
import { createRequire } from 'node:module';
import type * as S3 from '@aws-sdk/client-s3';

let sdk: typeof S3 | null = null;

/** The `@aws-sdk/client-s3` module (its CommonJS build, the one an import would load). */
export function s3Sdk(): typeof S3 {
  return (sdk ??= createRequire(import.meta.url)('@aws-sdk/client-s3') as typeof S3);
}
