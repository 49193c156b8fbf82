import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { openState } from '../_cli/mirror-flags.js';
import { peerDestination, transferFlags } from '../_cli/mirror-peer.js';
import { mirrorAbandon } from '../../src/mirror/run.js';
import { formatSize } from '../../src/core/size.js';

const { 'limit-rate': _rate, compress: _compress, ...flags } = transferFlags;

export default class MirrorAbandon extends ImgstreamCommand {
  static override summary = 'Drop what a stopped mirror transfer kept at the destination.';
  static override description = `A transfer that stops part way (a full file system at the destination, a lost connection, a signal) keeps what arrived beside the destination so the next "mirror update" resumes instead of starting over: for a first transfer the volume being built (.NAME.mirror-new), and for any transfer the blocks staged for the final consistency point (.NAME.mirror-stage) and how far it got (.NAME.mirror-transfer). The error and "mirror status" say how much space that holds. "mirror abandon" deletes those files (through the peer daemon for peer://HOST:PORT/NAME) and forgets the stopped transfer: the destination stays at its last complete state, and the next update starts a new transfer. A first transfer dropped so also loses the snapshot it took on the source (it held the whole disk there, and no update builds on it). Blocks a stopped incremental already wrote into the free space of an existing mirror stay in its file (they are free blocks there). While a transfer still holds the destination (a running update), it is refused with exit code 7 (busy).`;
  static override examples = ['<%= config.bin %> mirror abandon vm.vol --to /mnt/small-disk/vm.mirror', '<%= config.bin %> mirror abandon vm.vol --to peer://backup.example:7411/vm --token-file token --tls-ca ca.pem --json'];
  static override args = { volume: Args.string({ description: 'Source volume.', required: true }) };
  static override flags = flags;

  async run() {
    const { args, flags } = await this.parse(MirrorAbandon);
    const dest = peerDestination(flags.to, flags);
    const r = await mirrorAbandon(args.volume, dest, openState(flags.state));
    this.say(r.files.length ? `${dest.spec}: dropped the stopped transfer (${r.files.join(', ')}): ${formatSize(r.freedBytes)} freed; the next update starts a new transfer` : `${dest.spec}: no stopped transfer kept there`);
    if (r.snapshot) this.say(`${args.volume}: deleted snapshot ${r.snapshot}, which the dropped first transfer had taken`);
    if (r.snapshotKept) this.say(`${args.volume}: snapshot ${r.snapshotKept}`);
    return r;
  }
}
