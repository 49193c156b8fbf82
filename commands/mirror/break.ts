import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { openState, stateFlag } from '../_cli/mirror-flags.js';
import { peerFlags, peerDestination } from '../_cli/mirror-peer.js';
import { mirrorBreak } from '../../src/mirror/run.js';
import { peerFlagsNote } from '../../src/peer/index.js';

export default class MirrorBreak extends ImgstreamCommand {
  static override summary = 'Make a mirror destination writable.';
  static override description = `A mirror destination is read-only: only its mirror writes it (other writers get exit code 4). "mirror break" makes it an ordinary writable volume, for a failover or a test, in one consistency point; updates to it are refused from then on, until "mirror resync" re-establishes the relationship. DEST is the destination volume's path on this machine, or peer://HOST:PORT/NAME to break it through the peer daemon.`;
  static override examples = ['<%= config.bin %> mirror break /mirrors/vm', '<%= config.bin %> mirror break peer://backup.example:7411/vm --token-file token --tls-ca ca.pem'];
  static override args = { destination: Args.string({ description: 'Destination volume path, or peer://HOST:PORT/NAME.', required: true }) };
  static override flags = { ...peerFlags, state: stateFlag };

  async run() {
    const { args, flags } = await this.parse(MirrorBreak);
    const dest = peerDestination(args.destination, flags);
    const r = await mirrorBreak(dest);
    const state = openState(flags.state);
    const sources: string[] = [];
    for (const rel of state.relationships()) {
      if (rel.destination !== dest.spec) continue;
      state.update(rel.key, () => rel, (x) => (x.state = 'broken'));
      sources.push(rel.volume.path);
    }
    // the source as this machine's mirror state knows it (one relationship); else a placeholder to fill in
    const source = sources.length === 1 ? sources[0] : 'SOURCE';
    this.say(`${dest.spec}: broken off, writable (bring it back with: imgstream mirror resync ${source} --to ${dest.spec}${peerFlagsNote(dest.spec)})`);
    return r;
  }
}
