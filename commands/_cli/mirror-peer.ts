// How mirror and replicate commands reach a destination or source: a path on this
// machine, or a peer daemon (peer://HOST:PORT/NAME) with the peer flags (peer-flags.ts).
import { Flags } from '@oclif/core';
import { limitRateFlag, stateFlag } from './mirror-flags.js';
import { destinationFor, setPeerOpener, type Destination } from '../../src/mirror/run.js';
import { peerDestination as peerDest, replicatePullPeer } from '../../src/mirror/peer.js';
import type { MirrorResult } from '../../src/mirror/sender.js';
import { isPeerSpec } from '../../src/media/resolve.js';
import { peerClientOptions, peerFlags as sharedPeerFlags, type PeerFlagValues } from './peer-flags.js';

/** The peer flags without --limit-rate: mirror commands have their own (it limits local destinations too). */
const { 'limit-rate': _limit, ...peerOnly } = sharedPeerFlags;
export const peerFlags = peerOnly;

/** The flags of a command that runs mirror transfers (update, resync, start): where to, how to reach it, how fast, which state file. */
export const transferFlags = {
  to: Flags.string({ helpValue: 'DEST', char: 't', description: 'Destination: peer://HOST:PORT/NAME, or a volume path on this machine.', required: true }),
  ...peerFlags,
  'limit-rate': limitRateFlag,
  compress: Flags.string({
    description: 'How blocks travel: zstd (compressed on worker threads when the destination can take it; an older one gets them raw) or none. Default: zstd to a peer, none to a path on this machine (no wire to save: it would only cost CPU).',
    options: ['zstd', 'none'],
  }),
  state: stateFlag,
};

/** --compress as given, else zstd to a peer and none to a path on this machine. */
export function compressionFor(flag: string | undefined, dest: Destination): 'zstd' | 'none' {
  if (flag === 'zstd' || flag === 'none') return flag;
  return dest.spec.startsWith('peer://') ? 'zstd' : 'none';
}

/** A destination from what the user typed: peer:// needs the peer flags, anything else is a path. */
export function peerDestination(spec: string, flags: PeerFlagValues): Destination {
  const opts = peerClientOptions({ ...flags, 'limit-rate': undefined }, isPeerSpec(spec) ? [spec] : [], false, [spec]);
  if (opts) setPeerOpener((s) => peerDest(s, opts));
  return destinationFor(spec);
}

export async function peerReplicatePull(volume: string, from: string, flags: PeerFlagValues): Promise<MirrorResult> {
  const opts = peerClientOptions({ ...flags, 'limit-rate': undefined }, [from])!;
  return replicatePullPeer(volume, from, opts);
}
