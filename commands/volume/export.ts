import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { fileSink, parseVolumeRef, stdoutSink } from '../../src/volume/index.js';
import { exportVolumeAt } from '../../src/control/index.js';
import { formatSize } from '../../src/core/size.js';
import { InvalidInputError, UsageError } from '../../src/core/errors.js';
import { baseCheckNote, exportProtectedAsOf } from '../../src/journal/restore-as-of.js';
import { unreplayedWrites } from '../../src/journal/idle-journal.js';
import { peerExportAsOf } from '../../src/journal/peer-as-of.js';
import { isPeerSpec } from '../../src/media/resolve.js';
import { peerClientOptions, peerFlags } from '../_cli/peer-flags.js';

export default class VolumeExport extends ImgstreamCommand {
  static override summary = 'Write the active file system or a snapshot as a raw image.';
  static override description = `Writes the logical disk as of the active file system, or as of a snapshot with VOL@SNAPSHOT, as a raw image of the disk's size. Only mapped blocks are read. A file output is sparse, is written under a temporary name and appears under its own name only when complete; an existing file is replaced only with --force. "-" writes to stdout.

While the volume is being served (imgstream serve nbd), a snapshot is exported as it is (the server keeps it from being deleted until the export ends), and the active file system as a temporary snapshot the server takes for the export (named imgstream-export-PID-TIME, deleted when the export ends; it needs a free snapshot slot).

A volume served with --journal whose server was killed holds, in its journal, writes the server acknowledged after its last CP: the next server (or a command that changes the volume) replays them. Until then the active file system is exported without them, and a line on stderr says how many there are.

DEST --as-of TIME exports from a protection destination (the directory imgstream protect --to wrote) the disk as it was at the last recovery point at or before TIME, as restore --as-of --from DEST rebuilds it (TIME: a date as restore --as-of takes it, with milliseconds if need be, e.g. 2026-12-03T10:15:02.250Z, a snapshot name of a recovery point, or latest for the newest recovery point). DEST may be peer://HOST:PORT/NAME, a protection destination on a peer daemon, with the peer flags.`;
  static override examples = [
    '<%= config.bin %> volume export vm.vol --to current.raw',
    '<%= config.bin %> volume export vm.vol@monday --to monday.raw',
    '<%= config.bin %> volume export vm.vol@monday --to - | sha256sum',
    '<%= config.bin %> volume export /backup/vm1.cdp --as-of 2026-12-03T10:15:02.250Z --to vm-at-1015.raw',
    '<%= config.bin %> volume export peer://backup1:7420/vm1.cdp --as-of 2026-12-03T10:15 --to vm-at-1015.raw --token-file /etc/imgstream/peer.token --tls-ca ca.pem',
  ];
  static override args = { volume: Args.string({ description: 'VOL or VOL@SNAPSHOT, or a protection destination DEST with --as-of.', required: true }) };
  static override flags = {
    to: Flags.string({ helpValue: 'FILE|-', char: 't', description: 'Output file or block device, or - for stdout. A block device is opened exclusively (refused when mounted or held by LVM, md, dm-crypt: exit 7) and one holding a file system or partition table needs --force (exit 6).', required: true }),
    force: Flags.boolean({ description: 'Replace an existing output file; write over a block device holding a file system or partition table.' }),
    'as-of': Flags.string({ helpValue: 'TIME|SNAPSHOT', description: 'With a protection destination: the disk as of this time (or recovery point snapshot).' }),
    ...peerFlags,
  };

  async run() {
    const { args, flags } = await this.parse(VolumeExport);
    if (flags.to === '-' && this.jsonEnabled()) throw new UsageError('--json cannot be combined with --to -: the image goes to stdout');
    // (as dump -t - does: a disk's bytes on a terminal are no use, and can leave it in any state)
    if (flags.to === '-' && process.stdout.isTTY) throw new InvalidInputError('refusing to write an image to a terminal', 'redirect stdout to a file or a pipe, or give --to FILE');
    const sinkFor = (size: number) => (flags.to === '-' ? stdoutSink() : fileSink(flags.to, { force: flags.force, size }));
    if (flags['as-of'] !== undefined) {
      const peer = peerClientOptions(flags, isPeerSpec(args.volume) ? [args.volume] : []);
      const r = isPeerSpec(args.volume) ? await peerExportAsOf(args.volume, flags['as-of'], peer!, sinkFor, this.progress()) : await exportProtectedAsOf(args.volume, flags['as-of'], sinkFor, this.progress());
      if (flags.to !== '-') this.say(`exported ${args.volume} as of ${r.point.time} (${r.point.baseSnapshot ? `snapshot ${r.point.baseSnapshot} of the base` : `interval ${r.point.seq}`}) to ${flags.to}: ${formatSize(r.bytes)}, ${r.overlayBlocks} blocks from ${r.intervals} interval(s) over the base${baseCheckNote(r)}`);
      return { ...r, to: flags.to };
    }
    const ref = parseVolumeRef(args.volume);
    // (a journal's writes a killed server acknowledged are not in the volume until something replays them: said, not exported in silence)
    const unreplayed = ref.snapshot === undefined ? unreplayedWrites(ref.volume) : 0;
    const result = await exportVolumeAt(ref.volume, ref.snapshot, sinkFor, this.progress());
    if (unreplayed > 0) process.stderr.write(`${ref.volume}: its write journal holds ${unreplayed} writes a server acknowledged after its last CP and did not commit (it was killed), not in this export: serve it with --journal, or take a snapshot, to replay them\n`);
    if (flags.to !== '-') this.say(`exported ${ref.snapshot ? `snapshot ${ref.snapshot}` : 'active file system'} to ${flags.to}: ${formatSize(result.bytes)}, ${result.mappedBlocks} blocks mapped`);
    return { ...result, to: flags.to };
  }
}
