import { Args } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { openState, parseRate } from '../_cli/mirror-flags.js';
import { compressionFor, peerDestination, transferFlags } from '../_cli/mirror-peer.js';
import { mirrorUpdate } from '../../src/mirror/run.js';
import { runLines } from '../_cli/mirror-report.js';
import { lateStopLine, stoppableBySignals } from '../_cli/stop-signals.js';

export default class MirrorUpdate extends ImgstreamCommand {
  static override summary = 'Bring a mirror up to date: one incremental transfer.';
  static override description = `A mirror is an exact replica of a volume (same VBNs, same snapshots) on a peer (peer://HOST:PORT/NAME, served by "imgstream serve peer": the volume DIR/NAME there) or at a path on this machine. SIGINT, SIGHUP or SIGTERM stops an update where it is, saying so in one line, and exits 130, 129 or 143: the next update resumes it. One that comes once the destination has committed the transfer is too late: the update finishes, says so in one line on stderr, and exits 0. The update creates its destination: a path holding a volume that is not a mirror, a file of another kind, or the source volume itself (by any name or link) is refused. The first update transfers every block of every snapshot; later updates take a snapshot (mirror.TAG.N, N past every number the source and the mirror hold and no smaller than the source's snapshot id counter: a name never returns for another state, even after the snapshot of a killed transfer is deleted), swap the mark-on-allocate planes in the same consistency point, and transfer only the blocks the shipped plane marked (allocations since the last transfer), the planes of the new snapshots, and the snapshot table's changes (snapshots deleted on the source are deleted on the mirror, deallocating their blocks). The snapshot pins the blocks being shipped until the transfer completes; then the shipped plane is emptied and the previous mirror snapshot deleted (the mirror keeps it until the next transfer).

The destination switches to the new state only when the transfer is complete and verified (the crc32 of every record, and a SHA-256 chain over the whole transfer), in one consistency point of its own: it is always at a complete earlier state. A transfer that fails keeps its plane, and an interrupted one resumes where it stopped: run the update again, and records the destination acknowledged are not sent again. It resumes only into the very volume those records went into, as the transfer found it: a mirror deleted, moved away or replaced since (by another volume, or a copy of itself from before the transfer) holds none of them, so the update drops what the stopped transfer kept, says so in one line, and does what it would do fresh (a full copy where the mirror is gone). One that fails before the destination acknowledged anything leaves nothing behind: the destination drops its side files and the source the snapshot the update took. A destination no transfer could finish at (a name over 255 bytes, a missing directory) is refused before the snapshot is taken. One transfer at a time goes into a destination, a first one too: while another runs (cron starting the next update before the last ended, a retry), the update is refused at once with exit code 7 (busy), in one line naming the transfer under way and its process, before the snapshot is taken; it changes nothing. A transfer killed with kill -9 holds nothing: the next update resumes it.

Blocks and planes travel as zstd frames compressed on worker threads (--compress, default zstd to a peer, none to a path on this machine), when the destination can take them (an older one gets them raw). When the destination's file system fills up, the error says how much of the transfer it keeps to resume from and how to drop it ("mirror abandon").

A run that finishes a transfer an earlier run left part way, then brings the destination to now, makes two transfers and prints one line for each. --json reports the last transfer at the top level (the state the destination holds now) and every transfer of the run in "transfers": blocks (sent in this run), planBlocks (all the transfer carries), bytes (on the wire, this run), totalBytes (every attempt), the transfer mode (full, moa: marked blocks, common: difference from the snapshots both sides hold; moa only while the destination is at the state this very volume file sent it last, so after a copy of the file, a cloned disk with the same uuid, updated the same destination the next update is common), discarded (a stopped transfer the destination dropped, and why), compression, resumedRecords, and upToDate (true when no block had to move).`;
  static override examples = [
    '<%= config.bin %> mirror update vm.vol --to peer://backup.example:7411/vm --token-file /etc/imgstream/token --tls-ca /etc/imgstream/ca.pem',
    '<%= config.bin %> mirror update vm.vol --to /mnt/second-disk/vm.mirror',
    '<%= config.bin %> mirror update vm.vol --to peer://10.0.0.2:7411/vm --token-file token --plain --limit-rate 50M --json',
    '<%= config.bin %> mirror update vm.vol --to peer://10.0.0.2:7411/vm --token-file token --plain --compress none',
  ];
  static override args = { volume: Args.string({ description: 'Source volume.', required: true }) };
  static override flags = transferFlags;

  async run() {
    const { args, flags } = await this.parse(MirrorUpdate);
    const dest = peerDestination(flags.to, flags);
    // SIGINT, SIGHUP, SIGTERM: the transfer stops where it is (the next update resumes it) and the command says so
    let late: NodeJS.Signals | null = null;
    const r = await stoppableBySignals((signal) => mirrorUpdate(args.volume, dest, { op: 'mirror.update', state: openState(flags.state), limitRate: parseRate(flags['limit-rate']), progress: this.progress(), compress: compressionFor(flags.compress, dest), signal }), (sig) => (late = sig));
    for (const line of runLines(args.volume, r)) this.say(line);
    if (late) process.stderr.write(`${lateStopLine(late, 'the update', 'the mirror had committed it')}\n`);
    return r;
  }
}
