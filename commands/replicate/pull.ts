import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { openState, stateFlag } from '../_cli/mirror-flags.js';
import { peerFlags, peerReplicatePull } from '../_cli/mirror-peer.js';
import { replicatePullLocal } from '../../src/mirror/run.js';
import { formatSize } from '../../src/core/size.js';

export default class ReplicatePull extends ImgstreamCommand {
  static override summary = "Update a replica to its source's newest master snapshot.";
  static override description = `Asks the source (peer://HOST:PORT/NAME through its peer daemon, or a volume path on this machine) for an update of VOL to the source's newest master snapshot ("snapshot create --master"): the blocks of the snapshots up to it minus those of the snapshots both hold, or a full copy when they have none in common (VOL is created when it does not exist). Like a mirror, VOL becomes an exact replica of the source at that snapshot, read-only, switched in one consistency point when the transfer is complete and verified. A source that "imgstream serve nbd" serves (read-write or read-only) is read through its server, as "mirror update" reads it. A replica is never taken back: one holding a snapshot newer than that master (the master it pulled last was deleted on the source with --force, or it is a mirror ahead of the masters) is refused and left as it is (exit 4) until a newer master is taken. The source records each replica and keeps a master snapshot until every known replica has passed it (a newer master): "snapshot delete" refuses to delete it without --force. Replicas can themselves be pulled from, forming replication trees.`;
  static override examples = ['<%= config.bin %> replicate pull /replicas/vm --from peer://origin.example:7411/vm --token-file token --tls-ca ca.pem', '<%= config.bin %> replicate pull /replicas/vm --from /volumes/vm.vol'];
  static override args = { volume: Args.string({ description: 'Replica volume (created when missing).', required: true }) };
  static override flags = {
    from: Flags.string({ helpValue: 'SOURCE', char: 'f', description: 'Source: peer://HOST:PORT/NAME, or a volume path on this machine.', required: true }),
    ...peerFlags,
    state: stateFlag,
  };

  async run() {
    const { args, flags } = await this.parse(ReplicatePull);
    const r = flags.from.startsWith('peer://') ? await peerReplicatePull(args.volume, flags.from, flags) : await replicatePullLocal(flags.from, args.volume, { state: openState(flags.state), progress: this.progress() });
    if (r.upToDate) this.say(`${args.volume} is up to date (${r.top})`);
    else this.say(`${args.volume} <- ${flags.from}: ${r.mode} transfer to master ${r.top}: ${r.blocks} blocks, ${formatSize(r.bytes)}, CP ${r.generation}`);
    return r;
  }
}
