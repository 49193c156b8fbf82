// Which store an s3:// medium talks to, and what the catalog records of it. The endpoint
// is --s3-endpoint, else AWS_ENDPOINT_URL, else AWS; path-style addressing is
// --s3-path-style, else IMGSTREAM_S3_PATH_STYLE=1. A dump (and catalog rebuild) records
// both with the object's position (MediaPosition.endpoint, .pathStyle), so restore --as-of
// reads each object from the store it was written to without being told again. An
// endpoint given now (the flag, or AWS_ENDPOINT_URL) wins over the recorded one (the store
// moved, or is reached by another name), and then the recorded addressing is not used
// either: it belongs to the recorded endpoint. Credentials are never recorded: a
// user:password written into an endpoint URL is left out.
import { InvalidInputError } from '../../core/errors.js';
import type { MediaPosition } from '../medium.js';
import type { S3Options } from './s3-client.js';

/** Where requests go: the endpoint (undefined: AWS) and the addressing. */
export interface S3Place {
  endpoint?: string;
  pathStyle: boolean;
}

const ENDPOINT_HINT = 'give http://HOST:PORT or https://HOST of the S3-compatible store';

/** What is wrong with an endpoint URL, or null: the SDK takes a malformed one without complaint and fails each request with a TypeError. */
export function endpointProblem(value: string): string | null {
  if (value === '') return 'is empty';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return `${value}: not a URL`;
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return `${value}: not an http or https URL`;
  if (url.hostname === '') return `${value}: names no host`;
  return null;
}

/** Whether an endpoint is given now: --s3-endpoint, or a non-empty AWS_ENDPOINT_URL. */
export function endpointGiven(opts: S3Options): boolean {
  return opts.endpoint !== undefined || (process.env.AWS_ENDPOINT_URL ?? '') !== '';
}

/** The endpoint and addressing `opts` and the environment name, the endpoint checked (one line, exit 4, before any request). */
export function s3Place(opts: S3Options): S3Place {
  const fromFlag = opts.endpoint !== undefined;
  const value = fromFlag ? opts.endpoint! : process.env.AWS_ENDPOINT_URL;
  const pathStyle = opts.pathStyle ?? process.env.IMGSTREAM_S3_PATH_STYLE === '1';
  if (value === undefined || (!fromFlag && value === '')) return { pathStyle };
  const bad = endpointProblem(value);
  if (bad) throw new InvalidInputError(`${fromFlag ? '--s3-endpoint' : 'AWS_ENDPOINT_URL'} ${bad}`, ENDPOINT_HINT);
  return { endpoint: value, pathStyle };
}

/** The endpoint as recorded: without any user name and password written into it. */
function withoutCredentials(endpoint: string): string {
  const url = new URL(endpoint);
  if (url.username === '' && url.password === '') return endpoint;
  url.username = '';
  url.password = '';
  return url.href;
}

/** The fields a position of an object at `place` carries (none for AWS with virtual-hosted addressing). */
export function recordedPlace(place: S3Place): Pick<MediaPosition, 'endpoint' | 'pathStyle'> {
  return { ...(place.endpoint !== undefined ? { endpoint: withoutCredentials(place.endpoint) } : {}), ...(place.pathStyle ? { pathStyle: true as const } : {}) };
}

/**
 * The options to read the object a catalog record places at `p`: those given, and, when
 * they name no endpoint, the endpoint and addressing recorded with it (--s3-path-style or
 * IMGSTREAM_S3_PATH_STYLE=1 still turn path-style on).
 */
export function optionsForRecorded(p: MediaPosition, given: S3Options = {}): S3Options {
  if (endpointGiven(given)) return given;
  return { ...given, ...(p.endpoint !== undefined ? { endpoint: p.endpoint } : {}), ...(given.pathStyle === undefined && p.pathStyle ? { pathStyle: true } : {}) };
}

/** How listings show where an object is: " at ENDPOINT" for an S3-compatible store (nothing for AWS), and its addressing. */
export function placeSuffix(p: MediaPosition): string {
  if (p.kind !== 's3') return '';
  return `${p.endpoint !== undefined ? ` at ${p.endpoint}` : ''}${p.pathStyle ? ' (path-style)' : ''}`;
}
