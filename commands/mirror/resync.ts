import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { openState, parseRate } from '../_cli/mirror-flags.js';
import { compressionFor, peerDestination, transferFlags } from '../_cli/mirror-peer.js';
import { mirrorUpdate } from '../../src/mirror/run.js';
import { formatSize } from '../../src/core/size.js';
import { lateStopLine, stoppableBySignals } from '../_cli/stop-signals.js';

export default class MirrorResync extends ImgstreamCommand {
  static override summary = 'Re-establish a mirror after a break or a long outage.';
  static override description = `Finds the newest snapshots the source and the destination both hold (same id, name and consistency point), and makes the destination equal the source again: the destination's own changes since then (writes after "mirror break", snapshots it took) are dropped, and the source's changes since then are transferred: the blocks of the new snapshots minus those of the common ones, so only the differences move. The destination switches in one consistency point when the transfer is complete and verified, becomes read-only again, and later "mirror update" runs go on with the mark-on-allocate planes. With no common snapshot, everything is transferred.

Failback: after a failover (the mirror broken off and used in the source's place), "mirror resync MIRROR --to SOURCE --reverse" brings the failover volume's changes back onto the original volume, only the differences since their newest common snapshot: the original becomes a read-only mirror of the failover volume, its own changes since that snapshot (writes, snapshots) dropped. Then "mirror break SOURCE" makes it writable, and "mirror resync SOURCE --to MIRROR" makes the other one its mirror again. Without --reverse a volume that is no mirror is refused (exit 4), and with it only a volume of the source's identity is taken.`;
  static override examples = [
    '<%= config.bin %> mirror resync vm.vol --to peer://backup.example:7411/vm --token-file token --tls-ca ca.pem',
    '<%= config.bin %> mirror resync vm.vol --to /mnt/second-disk/vm.mirror',
    '<%= config.bin %> mirror resync /mnt/second-disk/vm.mirror --to vm.vol --reverse     # fail back after a failover',
  ];
  static override args = { volume: Args.string({ description: 'Source volume.', required: true }) };
  static override flags = {
    ...transferFlags,
    reverse: Flags.boolean({ description: 'Fail back: the destination may be the volume this source is a mirror of (not a mirror itself); it becomes this source\'s mirror, its changes since their newest common snapshot dropped.', default: false }),
  };

  async run() {
    const { args, flags } = await this.parse(MirrorResync);
    const dest = peerDestination(flags.to, flags);
    // SIGINT, SIGHUP, SIGTERM: the transfer stops where it is (the next update resumes it) and the command says so
    let late: NodeJS.Signals | null = null;
    const r = await stoppableBySignals((signal) => mirrorUpdate(args.volume, dest, { op: 'mirror.resync', state: openState(flags.state), limitRate: parseRate(flags['limit-rate']), progress: this.progress(), compress: compressionFor(flags.compress, dest), signal, reverse: flags.reverse }), (sig) => (late = sig));
    this.say(`${args.volume} -> ${dest.spec}: resynchronised (${r.mode}) to ${r.top}: ${r.blocks} blocks, ${formatSize(r.bytes)} sent, CP ${r.generation}`);
    if (late) process.stderr.write(`${lateStopLine(late, 'the resync', 'the mirror had committed it')}\n`);
    return r;
  }
}
