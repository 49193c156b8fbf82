// The flags of every command that talks to a peer daemon (dump, restore, verify, catalog
// rebuild with peer:// URLs; later mirror): the shared token, how the daemon's TLS
// certificate is checked (or plain mode), and a bandwidth limit.
import { Flags } from '@oclif/core';
import type { PeerClientOptions } from '../../src/peer/index.js';
import { checkPeerClientOptions } from '../../src/peer/index.js';
import { parseSize } from '../../src/core/size.js';
import { UsageError } from '../../src/core/errors.js';
import { refuseUnknownUrl } from '../../src/media/url-like.js';

const helpGroup = 'PEER';

export const peerFlags = {
  'token-file': Flags.string({
    helpValue: 'FILE',
    description: 'For peer:// URLs: the shared token, the same contents as the daemon\'s --token-file (mode 600). It is never sent: both sides prove they hold it.',
    helpGroup,
  }),
  'tls-ca': Flags.string({
    helpValue: 'FILE',
    description: 'For peer:// URLs: check the daemon\'s TLS certificate against this CA (PEM), host name included. A self-signed daemon certificate can be its own CA. Not with --plain.',
    helpGroup,
  }),
  'tls-fingerprint': Flags.string({
    helpValue: 'sha256:HEX',
    description: 'For peer:// URLs: accept only the daemon certificate with this SHA-256 fingerprint (serve peer prints it). With --tls-ca, both must hold. Not with --plain.',
    helpGroup,
  }),
  plain: Flags.boolean({
    description: 'For peer:// URLs: plain TCP without TLS, to a daemon started with --plain (a trusted network only: streams travel in the clear). Not with --tls-ca or --tls-fingerprint.',
    helpGroup,
  }),
  'limit-rate': Flags.string({
    helpValue: 'RATE',
    description: 'For peer:// URLs: send at most RATE bytes per second (e.g. 20M).',
    helpGroup,
  }),
};

export interface PeerFlagValues {
  'token-file'?: string;
  'tls-ca'?: string;
  'tls-fingerprint'?: string;
  plain?: boolean;
  'limit-rate'?: string;
}

const PEER_FLAG_NAMES = ['token-file', 'tls-ca', 'tls-fingerprint', 'plain', 'limit-rate'] as const;

/**
 * The client options the flags give, or undefined when none was given. `peerSpecs` are
 * the peer:// URLs on the command line: for them the options must be complete; peer
 * flags without any peer:// URL are refused unless `mayNeed` (a chain from the catalog
 * may lead to a peer).
 */
export function peerClientOptions(flags: PeerFlagValues, peerSpecs: string[], mayNeed = false, typed: string[] = []): PeerClientOptions | undefined {
  const given = PEER_FLAG_NAMES.filter((n) => flags[n] !== undefined && flags[n] !== false);
  // checked here rather than with oclif's `exclusive`, whose usage line for three flags
  // printed an empty alternative ("[--tls-fingerprint sha256:HEX | ]")
  if (flags.plain && (flags['tls-ca'] !== undefined || flags['tls-fingerprint'] !== undefined)) throw new UsageError('--plain cannot be combined with --tls-ca or --tls-fingerprint', 'plain TCP has no certificate to check: give one or the other');
  if (given.length === 0 && peerSpecs.length === 0) return undefined;
  // (a mistyped peer URL among what was typed, peer:/host:1/x: named as that, exit 4, not as flags without a peer)
  if (peerSpecs.length === 0 && !mayNeed) for (const t of typed) refuseUnknownUrl(t, 'peer://HOST:PORT/NAME, or a local path');
  if (peerSpecs.length === 0 && !mayNeed) throw new UsageError(`--${given[0]} is for peer://HOST:PORT/NAME sources and targets, and none is given`);
  const opts: PeerClientOptions = {
    tokenFile: flags['token-file'] ?? '',
    tls: flags['tls-ca'] || flags['tls-fingerprint'] ? { ca: flags['tls-ca'], fingerprint: flags['tls-fingerprint'] } : undefined,
    plain: flags.plain === true,
    limitRate: flags['limit-rate'] === undefined ? 0 : parseSize(flags['limit-rate'].replace(/\/s$/i, ''), 'rate limit'),
  };
  checkPeerClientOptions(opts, peerSpecs[0] ?? 'a peer');
  return opts;
}
