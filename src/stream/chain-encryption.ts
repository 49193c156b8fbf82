// Encrypted chains (restore and verify): an unencrypted stream where the chain says an
// encrypted one belongs could be anyone's (a plain stream needs no key to write and has
// nothing that authenticates it). Where the catalog records the dump as encrypted, or a
// stream before it in the chain is encrypted (--allow-unencrypted reads a chain encrypted
// from some level on, not one that goes back), it is refused (auth), --allow-unencrypted
// or not, before anything of it is applied.
import { AuthError } from '../core/errors.js';
import type { StreamHeader } from '../format/image-stream.js';

/** `expected`: what the catalog records of the dump at that place; `encryptedBefore`: the last encrypted stream of the chain before it. */
export function refuseUnencryptedInPlace(name: string, header: StreamHeader, expected: { streamId: string; encrypted?: boolean } | undefined, encryptedBefore: string | null): void {
  if (header.encryption) return;
  if (expected?.encrypted) {
    throw new AuthError(`${name}: the stream is not encrypted, and the catalog records dump ${expected.streamId.slice(0, 8)} there as encrypted: anyone could have written it in its place`, 'find the dump on other media, or rebuild the catalog from what the media hold: imgstream catalog rebuild --from SOURCE...');
  }
  if (encryptedBefore !== null) {
    throw new AuthError(`${name}: the stream is not encrypted, and ${encryptedBefore} before it in the chain is: anyone could have written it in its place`, '--allow-unencrypted reads a chain encrypted from some level on, not one that goes back to unencrypted streams');
  }
}
