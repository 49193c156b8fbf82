import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { fileSource, importImage, stdinSource, withVolume } from '../../src/volume/index.js';
import { withIdleJournal } from '../../src/journal/idle-journal.js';
import { changeJournalNote, journalJson } from '../_cli/journal-note.js';
import { refuseKnownFormats } from '../../src/volume/image-format.js';
import { formatSize } from '../../src/core/size.js';

export default class VolumeImport extends ImgstreamCommand {
  static override summary = 'Make the logical disk equal to a raw image, writing only changed blocks.';
  static override description = `Reads a raw image (a file, a block device, or stdin with "-") and compares it block by block with the logical disk: only blocks whose content differs are written (to free blocks: write-anywhere), all-zero blocks are unmapped (thin), and the disk past the end of the image reads as zeros. The import ends in one consistency point, so an interrupted import leaves the volume exactly as it was. On a volume with a write journal (served with --journal before) that nobody serves now, the import tells the journal which blocks it changed, so imgstream protect resyncs just those once the volume is served again.

An image that starts like a known disk image or compressed format (qcow2, qed, vmdk, vhdx, vpc/VHD, vdi, LUKS, parallels, gzip, zstd, xz, bzip2) is refused with the "invalid-input" code (4) before the volume is touched, because importing a container's bytes would replace the disk with its metadata: convert it first (qemu-img convert -O raw IMAGE IMAGE.raw, or decompress it into the import), or pass --raw to import the bytes as they are. So is a file of imgstream's own (exit 4): a dump stream or tape file (restore it: imgstream restore --from FILE --to VOL) and a volume (export its disk first: imgstream volume export VOL --to IMAGE.raw). From stdin, the first 512 bytes are checked before anything is written (a start of zeros up to 1 MiB, where a volume's second root copy may be). An empty image (0 bytes: what a pipe gives when the command feeding it failed) is refused too, exit 4: it would unmap the whole disk; --raw does that on purpose. An image file is compared by this thread and a worker thread per other core; changed blocks are written behind on I/O threads while the next chunks are compared.`;
  static override examples = [
    '<%= config.bin %> volume import vm.vol --from disk.raw',
    'nbdcopy -- [ qemu-nbd -f qcow2 disk.qcow2 ] - | <%= config.bin %> volume import vm.vol --from -',
    'zstd -dc disk.raw.zst | <%= config.bin %> volume import vm.vol --from -',
    '<%= config.bin %> volume import vm.vol --from blob.bin --raw',
  ];
  static override args = { volume: Args.string({ description: 'Volume file or block device.', required: true }) };
  static override flags = {
    from: Flags.string({ helpValue: 'FILE|-', char: 'f', description: 'Raw image file or block device to read, or - for stdin.', required: true }),
    raw: Flags.boolean({ description: "Import the bytes as they are, even when they start like a disk image (qcow2, vmdk, vhdx, vhd, vdi, LUKS...), a compressed stream or an imgstream dump, tape file or volume, or when there are none (an empty image unmaps the whole disk)." }),
  };

  async run() {
    const { args, flags } = await this.parse(VolumeImport);
    const given = flags.from === '-' ? stdinSource() : fileSource(flags.from);
    const source = flags.raw ? given : refuseKnownFormats(given);
    // a journaled volume nobody serves: the journal learns which blocks changed (protect resyncs them)
    const { result, journal } = await withVolume(args.volume, true, (vol) => withIdleJournal(vol, () => importImage(vol, source, this.progress())));
    this.say(`imported ${formatSize(result.bytes)} from ${source.name}: ${result.changedBlocks} blocks written, ${result.unchangedBlocks} unchanged, ${result.unmappedBlocks} unmapped (CP ${result.generation})${changeJournalNote(journal)}`);
    return { ...result, ...journalJson(journal) };
  }
}
