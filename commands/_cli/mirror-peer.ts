// How mirror and replicate commands reach a destination or source: a path on this
// machine, or a peer daemon (peer://HOST:PORT/NAME) with the peer flags.
import { Flags } from '@oclif/core';
import { destinationFor, type Destination } from '../../src/mirror/run.js';
import type { MirrorResult } from '../../src/mirror/sender.js';
import { InvalidInputError } from '../../src/errors.js';

export const peerFlags = {
  'token-file': Flags.string({ helpValue: 'FILE', description: 'For peer:// URLs: the shared token file.', helpGroup: 'PEER' }),
  'tls-ca': Flags.string({ helpValue: 'FILE', description: "For peer:// URLs: CA for the daemon's certificate.", helpGroup: 'PEER' }),
  'tls-fingerprint': Flags.string({ helpValue: 'sha256:HEX', description: "For peer:// URLs: the daemon certificate's fingerprint.", helpGroup: 'PEER' }),
  plain: Flags.boolean({ description: 'For peer:// URLs: plain TCP.', helpGroup: 'PEER' }),
};

export interface PeerFlagValues {
  'token-file'?: string;
  'tls-ca'?: string;
  'tls-fingerprint'?: string;
  plain?: boolean;
}

export function peerDestination(spec: string, _flags: PeerFlagValues): Destination {
  return destinationFor(spec);
}

export async function peerReplicatePull(_volume: string, from: string, _flags: PeerFlagValues): Promise<MirrorResult> {
  throw new InvalidInputError(`${from}: peer sources are not available in this build`);
}
