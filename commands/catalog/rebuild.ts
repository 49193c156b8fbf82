import { Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { catalogFlag, openCatalog } from '../_cli/catalog-flag.js';
import { recordsFromMedia } from '../../src/stream/catalog-rebuild.js';
import { isPeerSpec, sourceFor } from '../../src/media/resolve.js';
import { peerClientOptions, peerFlags } from '../_cli/peer-flags.js';
import { refuseS3FlagsWithout, s3Flags, s3Options } from '../_cli/s3-flags.js';
import { rebuildBackupLogs } from '../../src/multiplex/index.js';
import { describePlace } from '../../src/catalog/record-place.js';
import { CorruptError, ImgstreamError, NotAVolumeError, NotFoundError } from '../../src/core/errors.js';

export default class CatalogRebuild extends ImgstreamCommand {
  static override summary = 'Rebuild catalog records by reading the media.';
  static override description = 'Every stream describes itself (its header) and proves it is complete (its trailer and checksums), so reading the media back recreates the catalog records of every complete dump on them. Records of the same dumps are replaced; other records are kept (a damaged catalog file is replaced whole, and kept beside it as CATALOG.damaged-TIME; a file of another kind, not a catalog at all, is refused and left as it is). Incomplete or damaged streams, and files that are not image streams, are reported and skipped; when every stream read is one, nothing is recorded, the catalog is left as it was, and the exit code is 9 (5 when none of them is an image stream this imgstream reads); media holding no stream at all (an empty tape directory) record nothing either, with exit 3. A tape set missing a tape file (gone from a tape directory) is read all the same: the dumps whole on it are recorded, those it cuts are listed as skipped, and the missing file is named as verify names it ("tape DIR: tape file N is missing"), with exit 3. S3 objects are recorded with the store they were read from (--s3-endpoint or AWS_ENDPOINT_URL, and path-style addressing), which restore --as-of then reads them from. The streams of a multiplexed tape file are found with its backup log (or by walking its members when the log is damaged or cut off: every stream that completed is recorded), and the log is kept with the catalog again. Streams read from a pipe (--from -, or tape files piped in: cat file0001.tar file0002.tar | imgstream catalog rebuild --from tape:/dev/stdin) are recorded as read from a pipe (media kind "stdin"), never at the pipe\'s path: later levels build on them, but restore --as-of cannot read them back, and says to restore them with --from the tape directory, device or file they are on; rebuilding from that medium later records where they are.';
  static override examples = [
    '<%= config.bin %> catalog rebuild --from tape:/tapes/t1 --from /backups/vm.l1',
    '<%= config.bin %> catalog rebuild --from s3://backups/vm1/ --s3-endpoint http://ceph1:7480 --s3-path-style',
    '<%= config.bin %> catalog rebuild --from peer://backup1:7420/vm1.l0 --token-file /etc/imgstream/peer.token --tls-ca /etc/imgstream/backup1.crt',
  ];
  static override flags = {
    catalog: catalogFlag,
    from: Flags.string({ helpValue: 'SOURCE', char: 'f', description: 'Media to read, repeatable: FILE, tape:DIR[,DIR...], s3://BUCKET/PREFIX/ (every object under the prefix), s3://BUCKET/KEY, peer://HOST:PORT/NAME.', multiple: true, required: true }),
    ...peerFlags,
    ...s3Flags,
  };

  async run() {
    const { flags } = await this.parse(CatalogRebuild);
    refuseS3FlagsWithout(flags, flags.from, `--from ${flags.from.join(', --from ')}`);
    const catalog = openCatalog(flags.catalog);
    const peer = peerClientOptions(flags, flags.from.filter(isPeerSpec));
    // a tape file gone from a tape: the dumps whole on the set are recorded, the missing file named (exit 3), as verify names it
    const { records, skipped, missing } = await recordsFromMedia(flags.from.map((f) => sourceFor(f, { peer, s3: s3Options(flags), acrossGaps: true })), this.progress());
    const gone = missing.length ? missing.map((m) => m.message).join('; ') : null;
    const goneHint = missing.length && missing[0] instanceof ImgstreamError && missing[0].hint ? missing[0].hint : 'put it back';
    if (records.length === 0 && gone !== null) throw new NotFoundError(`nothing recorded: ${gone}`, `${goneHint}; the catalog is unchanged`);
    if (records.length === 0 && skipped.length === 0) {
      // an empty tape directory, a prefix with no objects: a mistyped --from is no rebuild
      throw new NotFoundError(`nothing recorded: no stream found in ${flags.from.join(', ')}`, 'the catalog is unchanged; check the --from paths (tape:DIR reads every tape file of DIR)');
    }
    if (records.length === 0 && skipped.length > 0) {
      // nothing to record: the catalog is left as it is, and a script can tell
      const first = skipped[0];
      const one = skipped.length === 1;
      if (skipped.every((s) => s.code === 'not-a-volume')) {
        throw new NotAVolumeError(
          `nothing recorded: ${one ? 'the one file read is not an image stream' : `none of the ${skipped.length} files read is an image stream`} this imgstream reads; ${first.stream}: ${first.reason}`,
          'the catalog is unchanged; give the files, tapes or objects the dumps were written to',
        );
      }
      throw new CorruptError(
        `nothing recorded: ${skipped.length === 1 ? 'the one stream read was' : `all ${skipped.length} streams read were`} incomplete or damaged; ${first.stream}: ${first.reason}`,
        'the catalog is unchanged; read back another copy of these dumps, or run a new level 0',
      );
    }
    const ids = new Set(records.map((r) => r.id));
    let damaged: string | null = null;
    catalog.update((dumps) => {
      // a stream names its volume by uuid only: the path (and the time the dump finished) a record of it had are kept
      const known = new Map(dumps.map((d) => [d.id, d] as const));
      const pathOf = new Map(dumps.filter((d) => d.volume.path !== null).map((d) => [d.volume.uuid, d.volume.path] as const));
      for (const r of records) {
        const old = known.get(r.id);
        r.volume.path = old?.volume.path ?? pathOf.get(r.volume.uuid) ?? r.volume.path;
        if (old) r.finished = old.finished;
      }
      return [...dumps.filter((d) => !ids.has(d.id)), ...records];
    }, { replaceUnreadable: true, keptAside: (f) => (damaged = f) });
    const logs = rebuildBackupLogs(flags.from, catalog); // multiplexed tape files' backup logs
    for (const r of records) this.say(`recorded ${r.id.slice(0, 8)} level ${r.level} ${r.top.name} (${describePlace(r.media)})`);
    for (const s of skipped) this.say(`skipped ${s.stream}: ${s.reason}`);
    if (damaged) this.say(`the catalog was damaged: started afresh, the damaged file kept as ${damaged}`);
    this.say(`${records.length} dump(s) recorded in ${catalog.file}, ${skipped.length} skipped`);
    if (logs.length) this.say(`${logs.length} backup log(s) of multiplexed tape files kept with the catalog`);
    // recorded all the same: later levels build on them, and catalog list shows them
    const piped = records.filter((r) => r.media.kind === 'stdin').length;
    if (piped) this.say(`${piped} dump(s) read from a pipe: restore --as-of cannot read them back from there; restore them with --from the tape directory, device or file they are on (e.g. --from tape:DIR), or record where they are: imgstream catalog rebuild --from tape:DIR`);
    if (gone !== null) throw new NotFoundError(`${gone}: the ${records.length} dump(s) whole on the media were recorded`, goneHint);
    return { catalog: catalog.file, records, skipped, backupLogs: logs, damagedCatalogKeptAs: damaged };
  }
}
