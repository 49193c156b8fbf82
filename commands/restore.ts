import { Flags } from '@oclif/core';
import { ImgstreamCommand } from './_cli/base.js';
import { catalogFlag, openCatalog } from './_cli/catalog-flag.js';
import { restoreStreams } from '../src/stream/restore.js';
import { volumePick } from '../src/stream/volume-pick.js';
import { removeStaleStage } from '../src/stream/restore-stage.js';
import { sourcesForChain } from '../src/stream/chain-sources.js';
import { isPeerSpec, sourceFor } from '../src/media/resolve.js';
import { peerClientOptions, peerFlags } from './_cli/peer-flags.js';
import { refuseS3FlagsWithout, s3Flags, s3Options } from './_cli/s3-flags.js';
import { formatSize } from '../src/core/size.js';
import { UsageError } from '../src/core/errors.js';
import { allowUnencryptedFlag, keyFromFlags, readingKeyFlags } from './_cli/key-flags.js';
import { baseCheckNote, isProtectDestination, restoreProtectedAsOf } from '../src/journal/restore-as-of.js';
import { peerRestoreAsOf } from '../src/journal/peer-as-of.js';
import fs from 'node:fs';
import { readState, refuseVolumePath } from '../src/journal/destination-state.js';
import { closeIdleJournal, idleJournaling, openIdleJournal } from '../src/journal/idle-journal.js';
import { changeJournalNote, journalJson } from './_cli/journal-note.js';

export default class Restore extends ImgstreamCommand {
  static override summary = 'Apply a level 0 stream and its incrementals onto a volume.';
  static override description = `Applies image streams in order, block for block at the same VBNs. A full (level 0) stream creates VOL when it does not exist, with the identity and geometry of the source volume; every further stream must find its base snapshot on VOL (by its id and the CP that took it, not its name: renamed on the source after its dump, or on VOL, it is still the base), and is refused when its volume identity or block size differs. VOL then holds the streams' snapshots, byte-identical to the source's, and its active file system is the newest of them.

Each stream brings VOL to its source's state at the stream's top snapshot: VOL's older snapshots that the source had deleted by then are dropped by the same CP (the source may have reused their blocks), and the restore says so; when the snapshots the stream brings need the slots of those, a CP of its own drops them first, after the stream checked out. A snapshot taken on VOL after its base snapshot is refused, naming it: delete it (export it first to keep it) or restore into a new volume. So is a VOL whose active file system changed since its newest snapshot (written to, or a newer snapshot deleted on VOL), before anything is written ("invalid-input", 4), whether or not a block of the stream lands where the writes went: the stream's CP would discard them; export VOL first to keep them (imgstream volume export VOL --to FILE), or restore into a new volume. A stream whose top snapshot VOL holds already (given twice, or onto the volume it was restored to, a level 0 included: a chain restored again) is not applied again: when that is VOL's newest snapshot and nothing was written since, or a later stream of the same restore is held or applied (restore --from L0 --from L1 onto the volume it made: L0 is passed over, L1 too if VOL is at it, else applied), it is passed over and restore says so (exit 0, "nothing done" when no stream was applied; --json lists it under "held"); when VOL went on since (a newer snapshot, or writes to its active file system, which the stream would discard) and no later stream goes on from there, it is refused ("invalid-input", 4).

A replica with a write journal (served with --journal and protected, its server stopped) is told which blocks each stream changes, before its CP, as volume import does: the journal tracks them as after an overflow, so protect resyncs just those once the replica is served again (the snapshots the streams bring are named as not arriving at its protection destination); the line ends in "its write journal tracks the changed blocks", --json: journaled.

Nothing is committed before a stream's trailer and checksums are verified. Blocks go where VOL's last consistency point has none, or, when the source reused blocks of snapshots it deleted, into a stage file switched in by the CP: a restore that fails or is killed leaves VOL at its previous CP (a new VOL does not appear; when VOL has no room to journal the staged blocks, a CP of its own drops the deleted snapshots first). Staged blocks that VOL's active disk holds (a shadow snapshot's, the base made one at the source) are written in place when there is no room to journal them: the CP before marks the restore unfinished, and a VOL left so by a kill is opened by nothing but this restore, run again to finish it (exit 7 for every other command but volume info, which says "restore: unfinished", snapshot list, and volume export VOL@SNAPSHOT of a regular snapshot: those are whole; a shadow one, the base among them, lost the blocks the stream replaces, and its export is refused, "invalid-input", 4, as a shadow snapshot's with blocks reused is on any volume). With --as-of, the rerun takes the same chain from the catalog; one given only streams VOL holds already (or --as-of a snapshot it holds) is refused ("invalid-input", 4), naming the stream the restore stopped in and its top snapshot (noted beside VOL as .VOL.restore-unfinished-stream until the restore is finished). Only free blocks of VOL may hold data from a failed restore. A stream whose base snapshot is not on VOL (a broken chain) exits with the "not-found" code (3), as verify does; a damaged stream with "corrupt" (9).

Encrypted streams need their key: --key-file or --passphrase-file, as given to dump (several, repeated or both, for a chain dumped with different ones: each stream takes the one that decrypts it); without either, on a terminal, the passphrase of a stream encrypted with one is asked for once (without echo) when the first encrypted stream is met, and used for the whole chain. Without it, or with another, restore stops with the "auth" code (11) before writing anything; so it does for a stream that is not encrypted when a key is given (it cannot be authenticated), unless --allow-unencrypted (a chain whose later dumps were encrypted); a stream that fails authentication (changed, records reordered, dropped or taken from another stream) is "corrupt" (9). With a key or without, an unencrypted stream where the catalog records the dump as encrypted is refused ("auth", 11) before anything of it is written: the dump of the stream's id, the dump recorded at its place (the file, S3 object or peer stream it is read from; with --as-of, the dump the chain takes there), or, when the catalog records no dump of its id, a dump of the same volume, level and top snapshot (the catalog is read for this when an unencrypted stream is met; none at the path reads as no dumps, and so does one that cannot be read, said in a line on stderr).

--from takes files, "-" for stdin, "tape:DIR" (every dump on the tape, in order), "tape:DIR1,DIR2" (a dump spanning tapes), "tape:DIR#N" (the dump in tape file N), "tape:DEVICE" (the tape file at a drive's position; a pipe given as the tape, such as tape:/dev/stdin, is read to its end: every tape file it carries, in order), "s3://BUCKET/PREFIX/NAME" (an object on AWS S3 or an S3-compatible store, read with several ranged GETs in flight; credentials from the AWS environment or AWS_PROFILE, the endpoint from --s3-endpoint or AWS_ENDPOINT_URL), "s3://BUCKET/PREFIX/" (ending in "/": every object under the prefix, in key order, which is not chain order: name the objects so that the level 0 sorts first and each incremental after its base, e.g. 2026-06-03.l0, 2026-06-05.l1; out of order, an incremental met first by a restore into a new volume is refused before anything is created (3), and onto a volume the first stream out of place is refused (4) after those before it were applied) or "peer://HOST:PORT/NAME" (a stream stored on an imgstream peer daemon: give --token-file and --tls-ca or --tls-fingerprint, or --plain). Before anything is applied, every source is checked as far as it can be without reading its streams: a tape set missing a tape of a dump it holds (its last tape ends inside a dump that goes on) is refused ("not-found", 3), and so is a tape drive that cannot be opened; a drive cannot be read ahead, but each stream is applied whole or not at all. A multiplexed tape file (dump --multiplex) holding several volumes' dumps needs --volume PATH|UUID to pick one; only that volume's members are read (the backup log says where), and --json reports mediaBytesRead. On a tape of plain dumps, --volume takes only the streams whose header names that volume's uuid (a path names the volume there now, and the uuids the catalog records for dumps of it); the others are passed over, and none taken is "not-found" (3). --as-of SNAPSHOT|DATE picks the chain from the catalog instead (with the peer flags when it holds dumps sent to a peer): the newest dump whose top is that snapshot, or of the dumps taken by that date the one holding the newest state (the newest top snapshot: an older snapshot dumped again later does not win), then its base dumps down to a level 0 (of several dumps of one snapshot, one whose stream file or S3 object is there, the newest first; a chain with a file or object gone is refused before anything is restored). A date chooses the state, not the dumps: that snapshot existed by then and every dump of it holds the same blocks, so it or a base of it may be read from a dump taken after the date (a level 0 of it taken later for offsite: one stream). An S3 object is read from the store the catalog records with its dump (the endpoint and path-style addressing the dump used), unless --s3-endpoint or AWS_ENDPOINT_URL names one: that one wins, for every object of the chain, with --s3-path-style or IMGSTREAM_S3_PATH_STYLE=1 for its addressing. A date is YYYY-MM-DD (the end of that day, local time, so the day's dumps count), YYYY-MM-DDTHH:MM[:SS] (local time), either followed by Z or +HH:MM for another zone; anything else is a snapshot name. Only the dumps of one volume are considered: VOL's own when it exists, else the volume named with --volume; when the catalog holds dumps of several volumes that match and none is named, restore refuses and lists them. Onto an existing VOL, of several dumps of one snapshot the chain that goes on from a snapshot VOL holds is taken (known by identity, renamed since or not: a level 0 of the same snapshot taken later for offsite does not go onto it), the dumps up to the newest one whose top snapshot VOL holds already (restored before, its level 0 among them, even when its top was deleted since) are skipped (their media never read: a level 0 on a store out of reach does not stop the level 1 after it) and the rest of the chain applied; a VOL whose newest snapshot is the chain's top needs nothing (exit 0), and one already past it is refused ("invalid-input", 4): a restore never takes a volume back in time.

--as-of TIME --from DEST, where DEST is a protection destination (the directory imgstream protect --to wrote), rebuilds the disk as it was at the last recovery point at or before TIME (every write acknowledged by then, none after) into the new volume VOL: a copy of DEST's base volume, with its snapshots, and the newest version of each block changed since, read once. DEST may be peer://HOST:PORT/NAME, a protection destination on a peer daemon (with the peer flags): the daemon rebuilds the disk and sends it, and VOL holds the disk without the base's snapshots. TIME may also carry milliseconds (2026-12-03T10:15:02.250Z), be the name of a snapshot the source took, or be latest: the newest recovery point (the disk as at the window's end, what a failover restores; when the source also took a snapshot named latest, the word is refused as ambiguous and both times are named); a time outside DEST's window is refused, naming the window (see: imgstream protect status DEST).`;

  static override examples = [
    '<%= config.bin %> restore --from vm.june3.l0 --from vm.june5.l1 --to restored.vol',
    '<%= config.bin %> restore --from tape:/tapes/t1 --to restored.vol',
    '<%= config.bin %> restore --from tape:/tapes/t1#7 --volume vm2.vol --to vm2.restored',
    '<%= config.bin %> restore --to restored.vol --as-of june7',
    '<%= config.bin %> restore --to restored.vol --as-of june7 --s3-endpoint http://ceph2:7480 --s3-path-style',
    '<%= config.bin %> restore --to restored.vol --as-of 2026-06-08T00:00 --volume vm.vol',
    '<%= config.bin %> restore --to restored.vol --as-of 2026-06-07 --volume 5f1c2a9e',
    '<%= config.bin %> restore --from /backups/vm.l0 --from /backups/vm.l1 --to vm.vol --key-file /etc/imgstream/backup.key',
    '<%= config.bin %> restore --from /backups/vm.l0 --from /backups/vm.l1 --to vm.vol --key-file /etc/imgstream/2025.key --key-file /etc/imgstream/2026.key',
    'ssh src imgstream dump vm.vol --level 1 --to - | <%= config.bin %> restore --from - --to vm.vol',
    '<%= config.bin %> restore --from s3://backups/vm1/june3.l0 --from s3://backups/vm1/june5.l1 --to vm.vol --s3-endpoint http://ceph1:7480 --s3-path-style',
    '<%= config.bin %> restore --from s3://backups/vm1/ --to vm.vol    # every object under vm1/, in key order: 2026-06-03.l0, 2026-06-05.l1',
    '<%= config.bin %> restore --from peer://backup1:7420/vm1.l0 --to vm.vol --token-file /etc/imgstream/peer.token --tls-fingerprint sha256:HEX',
    '<%= config.bin %> restore --to vm-at-1015.vol --as-of 2026-12-03T10:15:02.250Z --from /backup/vm1.cdp',
  ];
  static override flags = {
    from: Flags.string({ helpValue: 'SOURCE', char: 'f', description: 'Stream source, repeatable: FILE, -, tape:DIR[,DIR...], tape:DIR#N, s3://BUCKET/KEY, s3://BUCKET/PREFIX/ (every object under it, in key order), peer://HOST:PORT/NAME.', multiple: true }),
    to: Flags.string({ helpValue: 'VOL', char: 't', description: 'Volume to restore into (created from a level 0 stream when it does not exist).', required: true }),
    'as-of': Flags.string({ helpValue: 'SNAPSHOT|DATE', description: 'Restore the chain ending at this snapshot (or at the newest state dumped by this date, read from any dump of it, a later one too: YYYY-MM-DD means the end of that day), from the catalog.' }),
    volume: Flags.string({ helpValue: 'PATH|UUID', description: 'Whose dumps to take (a path: the volume there now when the catalog has dumps of it, else the path as dumped; or the volume\'s uuid or a prefix of it): with --as-of into a new path when the catalog holds several volumes; with --from tape:..., the volume whose dumps to restore from a tape holding several volumes\' (a multiplexed tape file\'s backup log says whose each stream is; on a tape of plain dumps, each stream\'s header gives the volume\'s uuid: a path names the volume there now and the uuids the catalog records for it).' }),
    catalog: catalogFlag,
    ...readingKeyFlags,
    ...allowUnencryptedFlag,
    ...peerFlags,
    ...s3Flags,
  };

  async run() {
    const { flags } = await this.parse(Restore);
    if (flags['as-of'] !== undefined && flags['as-of'].trim() === '') throw new UsageError('--as-of is empty', 'give a snapshot name or a date: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS]');
    if (!flags.from?.length && !flags['as-of']) throw new UsageError('give the streams with --from, or --as-of to take them from the catalog');
    // with --as-of from the catalog the chain may hold S3 objects (the flags name their store); otherwise the sources say
    if (flags.from?.length) refuseS3FlagsWithout(flags, flags.from, `--from ${flags.from.join(', --from ')}`);
    if (flags.from?.length === 1 && flags['as-of'] && (isProtectDestination(flags.from[0]) || isPeerSpec(flags.from[0]))) {
      const from = flags.from[0];
      const r = isPeerSpec(from) ? await peerRestoreAsOf(from, flags['as-of'], flags.to, peerClientOptions(flags, [from])!, this.progress()) : await restoreProtectedAsOf(from, flags['as-of'], flags.to, this.progress());
      this.say(`${flags.to}: created as of ${r.point.time} (${r.point.baseSnapshot ? `snapshot ${r.point.baseSnapshot} of the base` : `interval ${r.point.seq}`} of ${r.destination}${r.point.snapshots.length && !r.point.baseSnapshot ? `, snapshots ${r.point.snapshots.join(', ')}` : ''}): ${r.overlayBlocks} blocks from ${r.intervals} interval(s) over the base${baseCheckNote(r)}`);
      return r;
    }
    // a volume given where a protection destination belongs is named for what it is (as export and status do)
    if (flags.from?.length === 1 && flags['as-of']) {
      refuseVolumePath(flags.from[0], true);
      // a path that is missing, or a directory: it was meant as a protection destination (readState names what is wrong)
      const plainPath = flags.from[0] !== '-' && !/^(tape:|s3:\/\/)/.test(flags.from[0]);
      let st: fs.Stats | undefined;
      try {
        st = plainPath ? fs.statSync(flags.from[0], { throwIfNoEntry: false }) : undefined;
      } catch {
        st = undefined; // (under a file: ENOTDIR) no such destination, as readState says
      }
      if (plainPath && (!st || st.isDirectory())) readState(flags.from[0]);
    }
    if (flags.from?.length && flags['as-of']) {
      // --as-of reads a chain from the catalog, or one protection destination: never streams given as well
      if (flags.from.length > 1) throw new UsageError(`--as-of takes one --from (a protection destination), not ${flags.from.length}`, 'restore --to NEW --as-of TIME --from DEST; streams are restored without --as-of: restore --to VOL --from L0 --from L1 …');
      throw new UsageError(`--as-of with --from ${flags.from[0]}: --from with --as-of names a protection destination, and this is a stream or a tape`, 'restore a chain of streams without --as-of: restore --to VOL --from L0 --from L1 …; or as of a time from the catalog without --from');
    }
    if (flags.volume !== undefined && !flags['as-of'] && !flags.from?.some((f) => f.startsWith('tape:'))) throw new UsageError('--volume chooses among the catalog\'s volumes or a tape\'s: give it with --as-of, or with --from tape:...');
    if ((flags.from ?? []).filter((f) => f === '-').length > 1) throw new UsageError('stdin (-) can be given once');
    const key = keyFromFlags(flags);
    const peer = peerClientOptions(flags, (flags.from ?? []).filter(isPeerSpec), flags['as-of'] !== undefined);
    const sources = flags['as-of'] ? await sourcesForChain(openCatalog(flags.catalog), flags.to, flags['as-of'], { peer, volume: flags.volume, s3: s3Options(flags) }) : flags.from!.map((f) => sourceFor(f, { peer, s3: s3Options(flags), volume: flags.volume, oneVolume: true }));
    // a tape of plain dumps cannot tell whose a stream is: the stream headers do
    const pick = flags.volume !== undefined && !flags['as-of'] ? volumePick(() => openCatalog(flags.catalog).read()) : undefined;
    if (sources.length === 0) {
      // --as-of onto a volume that holds that state already (a killed restore's stage file goes, as with every restore onto it)
      removeStaleStage(flags.to);
      this.say(`${flags.to}: holds ${flags['as-of']} already (its newest snapshot is the chain's top): nothing to restore`);
      return { volume: flags.to, created: false, streams: [], held: [], blocks: 0, bytes: 0 };
    }
    // a replica with a write journal, nobody serving it: the journal learns which blocks change (protect resyncs them)
    let opened: ReturnType<typeof openIdleJournal>;
    const result = await restoreStreams(sources, flags.to, this.progress(), key, pick, {
      catalog: () => openCatalog(flags.catalog).read(),
      catalogUnreadable: (line) => process.stderr.write(`${line}\n`),
      onExisting: (vol) => {
        opened = openIdleJournal(vol);
        return (ok) => {
          if (opened && 'writer' in opened) closeIdleJournal(opened.writer, ok);
        };
      },
    });
    const journal = result.streams.length > 0 ? idleJournaling(opened) : undefined;
    const lines = [
      ...result.streams.map((s) => ({ order: s.order, line: `restored level ${s.level} ${s.base ? `${s.base} -> ` : ''}${s.top} from ${s.stream}: ${s.blocks} blocks (${formatSize(s.bytes)})${s.skippedBlocks ? `, ${s.skippedBlocks} already present` : ''}${s.dropped.length ? `; dropped ${s.dropped.join(', ')} (deleted on the source)` : ''}${s.renamed?.length ? `; renamed ${s.renamed.join(', ')} (as on the source)` : ''}${s.activeInPlace ? `; ${s.activeInPlace} blocks of the active disk rewritten in place (no room to stage them)` : ''}` })),
      ...result.held.map((s) => ({ order: s.order, line: `${s.stream}: ${flags.to} holds its top snapshot ${s.top} already: not applied again` })),
    ];
    // in the order the streams came
    for (const { line } of lines.sort((a, b) => a.order - b.order)) this.say(line);
    const now = result.streams.at(-1)?.top ?? result.held.at(-1)!.top;
    const nothing = result.streams.length === 0 ? ' (nothing written since): nothing done' : '';
    this.say(`${flags.to}: ${result.created ? 'created, ' : ''}${result.streams.length} stream(s) applied${result.held.length ? `, ${result.held.length} held already` : ''}, now at ${now}${nothing}${changeJournalNote(journal)}`);
    return { ...result, ...journalJson(journal) };
  }
}
