// A path that looks like a URL imgstream does not know (`peer:/x` for peer://, `http://…`,
// `s3:/…`) is a typo, never a local path: taken as one, `protect --to peer:/vm1` would
// write the destination into ./peer:/vm1 and exit 0, leaving the user believing the data
// went off site.
import { InvalidInputError } from '../core/errors.js';

const SCHEME_LIKE = /^[a-z][a-z0-9+.-]*:\//i;

/** Refuses `spec` (exit 4) when it reads as a URL of a kind not handled before this call; `forms` says what is taken. */
export function refuseUnknownUrl(spec: string, forms: string): void {
  if (SCHEME_LIKE.test(spec)) throw new InvalidInputError(`${spec}: not a path, and not a URL imgstream knows`, `give ${forms} (a local path that begins like a URL: write it as ./${spec})`);
}
