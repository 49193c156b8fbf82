import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from './_cli/base.js';
import { verifyStreams, type VerifiedStream, type VerifyResult } from '../src/stream/verify.js';
import { isPeerSpec, sourceFor } from '../src/media/resolve.js';
import { peerClientOptions, peerFlags } from './_cli/peer-flags.js';
import { refuseS3FlagsWithout, s3Flags, s3Options } from './_cli/s3-flags.js';
import { formatSize } from '../src/core/size.js';
import { ImgstreamError, UsageError } from '../src/core/errors.js';
import { allowUnencryptedFlag, keyFromFlags, readingKeyFlags } from './_cli/key-flags.js';
import { argumentsInOrder } from './_cli/ordered-args.js';
import { catalogFlag, openCatalog } from './_cli/catalog-flag.js';

export default class Verify extends ImgstreamCommand {
  static override summary = 'Check image streams end to end without restoring them.';
  static override description = `Reads every stream through: the preamble and its features, every record's checksum, every zstd frame, the record layout, the trailer's counts and the SHA-256 of the whole stream. Given several streams (in chain order), also checks the chain of each volume: each stream's base among the snapshots of that volume's streams before it. Streams of several volumes (a tape holding the dumps of several) are checked as one chain per volume, and a full stream after a chain that began with one starts a new chain (a weekly level 0); an incremental goes on the newest chain holding its base (a level 0 of an older snapshot dumped for offsite in between does not cut it off). Writes nothing. The streams of a multiplexed tape file are read one and all: each that fails is named on the error line (and so is each volume its multiplex member lists whose stream a tape file cut short lost whole: exit 9); a stream its dump gave up (stopped by a signal, or failed: its aborted member) is no failure of the file: it is named on stderr ("given up by its dump after N parts here"), and the others decide the exit code, which ends "the other N stream(s) verified" when some passed (their ok lines are printed too); a backup log damaged or missing while the streams are whole is said on stderr ("damage" in --json), exit 0. Otherwise verify stops at the first problem, naming it: damage (a checksum, a frame, the layout, the trailer) exits with the "corrupt" code (9); a broken chain (a stream whose base snapshot is in none of the streams before it) with the "not-found" code (3), as restore does; streams of one volume that do not belong together (a full stream after a chain that began with an incremental, an incremental after streams that bring snapshots taken after its base: two incrementals of one base, or out of order, which restore refuses too) with "invalid-input" (4); a stream of a format version this imgstream does not read (a newer one wrote it), or bytes that are no stream at all (a volume, an image, another file), with "not-a-volume" (5). A tape set missing a tape of a dump (its last tape ends inside a dump that goes on) is refused before anything is read ("not-found", 3). An encrypted stream is verified with its key (--key-file or --passphrase-file, several for a chain dumped with different ones; without either, on a terminal, the passphrase is asked for once, without echo): every record and the header are authenticated; without the key verify says the stream is encrypted and exits with the "auth" code (11), as it does for a wrong key, and for a stream that is not encrypted when a key is given (unless --allow-unencrypted). With a key or without, an unencrypted stream where the catalog (--catalog) records the dump as encrypted is refused (11), as restore refuses it: the dump of the stream's id, the dump recorded at its place (the file, S3 object or peer stream it is read from), or, when the catalog records no dump of its id, a dump of the same volume, level and top snapshot. A catalog that cannot be read (damaged) records nothing, as none at all: a line on stderr says the check could not be made.`;
  static override examples = [
    '<%= config.bin %> verify /backups/vm.june3.l0 /backups/vm.june5.l1',
    '<%= config.bin %> verify --from /backups/vm.june3.l0 --from /backups/vm.june5.l1',
    '<%= config.bin %> verify tape:/tapes/t1',
    '<%= config.bin %> verify s3://backups/vm1/ --s3-endpoint http://ceph1:7480 --s3-path-style',
    'cat vm.l0 | <%= config.bin %> verify -',
    '<%= config.bin %> verify /backups/vm.l0 --key-file /etc/imgstream/backup.key',
    '<%= config.bin %> verify peer://backup1:7420/vm1.l0 --token-file /etc/imgstream/peer.token --tls-ca /etc/imgstream/backup1.crt',
  ];
  static override strict = false;
  static override args = { source: Args.string({ description: 'Stream sources: FILE, -, tape:DIR[,DIR...], tape:DIR#N, s3://BUCKET/KEY, s3://BUCKET/PREFIX/ (every object under it), peer://HOST:PORT/NAME.' }) };
  static override flags = {
    // as restore takes its sources: the --from list of a restore checks as it is
    from: Flags.string({ helpValue: 'SOURCE', char: 'f', description: 'A stream source, as restore takes it (repeatable): the same as giving it as an argument, after those.', multiple: true }),
    catalog: catalogFlag,
    ...readingKeyFlags,
    ...allowUnencryptedFlag,
    ...peerFlags,
    ...s3Flags,
  };

  async run() {
    const { raw, flags } = await this.parse(Verify);
    const specs = [...argumentsInOrder(raw), ...(flags.from ?? [])];
    if (specs.length === 0) throw new UsageError(`missing argument SOURCE: ${Verify.args.source.description?.replace(/\.$/, '')}`, 'see: imgstream verify --help');
    if (specs.filter((s) => s === '-').length > 1) throw new UsageError('stdin (-) can be given once');
    refuseS3FlagsWithout(flags, specs, specs.join(' '));
    const key = keyFromFlags(flags);
    const peer = peerClientOptions(flags, specs.filter(isPeerSpec));
    let result: VerifyResult;
    try {
      result = await verifyStreams(specs.map((s) => sourceFor(s, { peer, s3: s3Options(flags) })), this.progress(), key, { catalog: () => openCatalog(flags.catalog).read(), catalogUnreadable: (line) => process.stderr.write(`${line}\n`) });
    } catch (err) {
      // streams of a multiplexed tape file are read one and all: those that passed are named before the error
      const passed = err instanceof ImgstreamError ? (err.details as Partial<VerifyResult> | undefined)?.streams : undefined;
      for (const s of passed ?? []) this.sayVerified(s);
      throw err;
    }
    for (const g of result.givenUp ?? []) process.stderr.write(`${g}\n`);
    for (const d of result.damage ?? []) process.stderr.write(`${d} (the streams were found by their members' headers and are whole; imgstream tape log prints the catalog's copy of the log)\n`);
    for (const s of result.streams) this.sayVerified(s);
    if (result.chains.length > 1) {
      for (const c of result.chains) this.say(`volume ${c.volume}: ${c.streams} stream(s)${c.needs ? `, the chain needs snapshot ${c.needs} on the volume it is restored onto` : ''}`);
    } else if (result.needs) this.say(`the chain needs snapshot ${result.needs} on the volume it is restored onto`);
    this.say(`${result.streams.length} stream(s) verified`);
    return result;
  }

  private sayVerified(s: VerifiedStream): void {
    this.say(`${s.stream}: level ${s.level} ${s.base ? `${s.base} -> ` : ''}${s.top}, ${s.blocks} blocks (${formatSize(s.bytes)}), ${formatSize(s.streamBytes)} stream: ok`);
  }
}
