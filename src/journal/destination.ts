// Protection destinations: where `imgstream protect` ships a volume's intervals. A local
// directory (local-destination.ts) or one on a peer daemon (peer://HOST:PORT/NAME).
import { refuseUnknownUrl } from '../media/url-like.js';
import { UsageError } from '../core/errors.js';
import type { PeerClientOptions } from '../peer/client.js';
import type { ProtectDestination } from './destination-api.js';
import { LocalProtectDestination } from './local-destination.js';
import { PeerProtectDestination } from './peer-destination.js';

export { LocalProtectDestination } from './local-destination.js';
export { PeerProtectDestination, peerProtectStatus } from './peer-destination.js';
export { MemoryProtectDestination } from './memory-destination.js';
export { refuseVolumePath } from './destination-state.js';

/** The destination a `--to` string names: a directory, or peer://HOST:PORT/NAME (with the peer flags' options). */
export function openProtectDestination(spec: string, peerOptions?: PeerClientOptions): ProtectDestination {
  if (spec.startsWith('peer://')) {
    if (!peerOptions) throw new UsageError(`${spec} needs --token-file FILE`, 'the same token file the daemon was started with');
    return new PeerProtectDestination(spec, peerOptions);
  }
  refuseUnknownUrl(spec, 'a directory or peer://HOST:PORT/NAME');
  return new LocalProtectDestination(spec);
}
