import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from './_cli/base.js';
import { catalogFlag, openCatalog } from './_cli/catalog-flag.js';
import { nextTapePrompt } from './_cli/next-tape.js';
import { dumpVolumeAt } from '../src/stream/dump-at.js';
import { defaultThreads } from '../src/stream/compress-pool.js';
import { isPeerSpec, targetFor } from '../src/media/resolve.js';
import { peerClientOptions, peerFlags } from './_cli/peer-flags.js';
import { refuseS3FlagsWithout, s3Flags, s3Options } from './_cli/s3-flags.js';
import { formatSize, parseSize } from '../src/core/size.js';
import { UsageError, errorOfCode } from '../src/core/errors.js';
import { multiplexDump, type MultiplexDumpResult } from '../src/multiplex/index.js';
import { parseTapeSpec } from '../src/media/tape/index.js';
import { dumpKeyFromFlags, encryptFlag, keyFlags } from './_cli/key-flags.js';
import { lateStopLine, stoppableBySignals } from './_cli/stop-signals.js';
import { refuseOutputOverInputs, type DumpInput } from '../src/stream/dump-inputs.js';
import type { Catalog } from '../src/catalog/index.js';
import type { DumpResult } from '../src/stream/dump.js';
import { argumentsInOrder } from './_cli/ordered-args.js';

export default class Dump extends ImgstreamCommand {
  static override summary = 'Write a level 0/1/2... dump of a volume as an image stream.';
  static override description = `BSD dump levels: the base of a level N dump is the most recent dump of this volume at any lower level, found in the catalog (the one whose top snapshot is the newest). Its storage image is the sum of the snapshots taken after that base's top snapshot up to --snapshot, minus the base's top snapshot: a level 1 at june5 over a level 0 at june3 is "june5 + june4 - june3". Level 0 is the sum of every snapshot up to --snapshot. Without --snapshot a new snapshot is taken for the dump. A dump whose base snapshot no longer exists is refused: take a lower level.

The stream carries the blocks (each tagged with its VBN) in chunks of about 1 MiB, each compressed with zstd as an independent frame (on worker threads) and checksummed, plus the planes and snapshot table entries of the snapshots it brings (an incremental sends the map blocks it carries as their differences from its base's), and ends with a trailer holding counts and a SHA-256 of the whole stream. Only a complete dump is recorded in the catalog; one written to a memory device such as /dev/null (as a file or as a tape, tape:/dev/null; run for its timing: nothing can be read back) is not recorded, and its snapshot is deleted, so no later level builds on it.

Targets: a file (written under a temporary name, renamed when complete), "-" for stdout (the summary line then goes to stderr; not with --json), "tape:DIR" for a tape directory (the dump becomes its next tape file: a tar archive in fixed-size records, readable with "tar tvf"), "tape:DIR1,DIR2,..." with --tape-size to span several tapes, a tape device (e.g. /dev/nst0) with "tape:/dev/nst0" (written at the current position, in fixed-size records), "s3://BUCKET/PREFIX/NAME" for an object on AWS S3 or an S3-compatible store (a multipart upload completed only after the last byte: no object appears under NAME before the dump is complete; a failed dump aborts its upload, and a killed dump's unfinished upload, or one a failed dump could not abort (the store stopped answering: its error says so), is aborted by a dump to the same NAME once it has gone IMGSTREAM_S3_ABANDONED_S seconds (default 900) without a part: a younger one is taken for a dump still running and left alone; without --force it is written only if no object of that NAME exists then, so of two dumps racing to one NAME the second to complete exits 6 (and one whose upload someone else aborts exits 12, or 6 when another writer of the NAME is evident); a stopped --force dump keeps the object it would have replaced; a store that never answers fails after IMGSTREAM_S3_TIMEOUT_S seconds (default 60), exit 12; credentials and region from the AWS environment variables or AWS_PROFILE, the endpoint from --s3-endpoint or AWS_ENDPOINT_URL, recorded in the catalog with the path-style setting, never the credentials, so restore --as-of reads the object there), or "peer://HOST:PORT/NAME" for the file NAME in the directory of an imgstream peer daemon (see serve peer): give --token-file and --tls-ca or --tls-fingerprint (or --plain). The daemon checks the stream as it arrives and stores it under NAME only once it is complete, fsynced and valid; the dump succeeds only then. The target is checked (it exists, a peer refuses) before a snapshot is taken for the dump. So is the catalog (it reads; it is a regular file, or none yet, in a directory that exists), and a target that is one of the dump's own inputs is refused (exit 4), --force or not: the volume, the --key-file or --passphrase-file, the catalog (compared as files: a hard or symbolic link to one is the same).

SIGINT (Ctrl-C), SIGHUP (the terminal or ssh session went away) or SIGTERM stops the dump: its partial output is removed (a stream on stdout is left without its trailer, which every reader refuses; a --force dump over an existing file or object says that it was kept, not replaced), the snapshot it took is deleted, nothing is recorded, and it exits 130 (SIGINT), 129 (SIGHUP) or 143 (SIGTERM); a second signal ends it at once (one a quarter second or more after the first: a signal delivered twice, as timeout does to its command and then its process group, counts once). A dump already writing its trailer completes and is recorded, and one line on stderr says the signal came too late to stop it (exit 0); so does a --multiplex dump whose every source was read (its tape files are closed and published, every dump recorded). Only kill -9 leaves its snapshot behind (and a hidden partial file, which the next dump to the same name removes). A dump spanning tapes killed while it published its tape files (the continuation tapes first, the first tape last) can leave continuations whose earlier tapes hold only its partial files: the next dump to that set removes them, one line on stderr each ("tape T3: removed file0001.tar (tape 3 of dump ID), left by a dump killed before it published its earlier tapes"); a tape holding a tape file of any other dump is refused as the next tape, as before.

While the volume is being served (imgstream serve nbd), the dump asks the server to take its snapshot, keeps the snapshots it reads from being deleted or renamed until it ends, and reads them without stopping the server.

--encrypt encrypts every record after the header with AES-256-GCM (compressed first), with a key from --key-file (32 bytes: raw, 64 hex digits or base64) or a passphrase from --passphrase-file (stretched by scrypt). Without either, on a terminal, the passphrase is typed at a prompt, twice, without echo (they must match; at least 8 characters); elsewhere (a script, cron) --encrypt without a key flag is a usage error (2). Each stream has its own key, derived from yours and a random salt in its header; records cannot be changed, reordered, dropped or moved to another stream unnoticed. The header stays readable (catalog rebuild works without the key) but is authenticated; the catalog records that the stream is encrypted, never the key. Keep the key file safe: without it the stream cannot be read.

--multiplex dumps every volume given (dump VOL1 VOL2 ... --multiplex --to tape:DIR) at once onto one tape file per tape: each dump is planned on its own (its level's base from the catalog; --level and --snapshot apply to each), every source is read and compressed concurrently, and the writer takes whichever source has a part ready, so the tape waits only when none has data. The tape file is a tar archive whose members each belong to one stream (imgstream/<streamId>/part-NNNNNN: "tar xf" and "cat" of one stream's parts give that stream back), ending with the backup log of every member written (source, index, time, size, position), also kept with the catalog; "imgstream tape log tape:DIR#N" prints it. The tape file appears once every source has finished; a source that fails fails alone (the others complete and are recorded) and the command then exits with its error code, naming it.

--order vbn (default) sends blocks in VBN order, one sequential pass for disk and tape; --order interleave:N sends about 1 MiB from each of N equal stripes of the volume in turn, spreading reads over striped devices. Restore writes each block at its VBN whatever the order.`;
  static override examples = [
    '<%= config.bin %> dump vm.vol --level 0 --snapshot june3 --to /backups/vm.june3.l0',
    '<%= config.bin %> dump vm.vol --level 1 --to /backups/vm.l1 --dry-run',
    '<%= config.bin %> dump vm.vol --level 1 --to - | ssh backup imgstream restore --from - --to vm.vol',
    '<%= config.bin %> dump vm.vol --level 0 --to tape:/tapes/t1,/tapes/t2 --tape-size 100G',
    '<%= config.bin %> dump vm1.vol vm2.vol db.vol --level 1 --to tape:/tapes/t1 --multiplex',
    '<%= config.bin %> dump vm.vol --level 0 --to /backups/vm.l0 --encrypt --key-file /etc/imgstream/backup.key',
    '<%= config.bin %> dump vm.vol --level 0 --to /backups/vm.l0 --encrypt    # asks for a passphrase on the terminal',
    'AWS_PROFILE=backup <%= config.bin %> dump vm.vol --level 0 --to s3://backups/vm1/june3.l0',
    '<%= config.bin %> dump vm.vol --level 1 --to s3://backups/vm1/june5.l1 --s3-endpoint http://ceph1:7480 --s3-path-style',
    '<%= config.bin %> dump vm.vol --level 1 --to peer://backup1:7420/vm1.l1 --token-file /etc/imgstream/peer.token --tls-ca /etc/imgstream/backup1.crt',
  ];
  static override strict = false;
  static override args = { volume: Args.string({ description: 'Volume to dump (several with --multiplex).', required: true }) };
  static override flags = {
    level: Flags.integer({ helpValue: 'N', char: 'l', description: 'Dump level, 0 to 9.', required: true, min: 0, max: 9 }),
    snapshot: Flags.string({ helpValue: 'NAME', char: 's', description: 'Top snapshot of the dump [default: take a new one].' }),
    to: Flags.string({ helpValue: 'TARGET', char: 't', description: 'Target: FILE, - (stdout), tape:DIR[,DIR...], tape:DEVICE, s3://BUCKET/PREFIX/NAME or peer://HOST:PORT/NAME.' }),
    catalog: catalogFlag,
    'dry-run': Flags.boolean({ char: 'n', description: 'Show the storage image (blocks, bytes) and write nothing.' }),
    order: Flags.string({ helpValue: 'ORDER', description: 'Block order: vbn or interleave:N.', default: 'vbn' }),
    compress: Flags.string({ description: 'Compression: zstd or none.', options: ['zstd', 'none'], default: 'zstd' }),
    'compress-level': Flags.integer({ helpValue: 'N', description: 'zstd level: 1 fastest, 19 smallest; -7 to -1 faster still, compressing less; 0 is zstd\'s default level, 3.', default: 1, min: -7, max: 19 }),
    threads: Flags.integer({ helpValue: 'N', description: 'Compression threads (default: one per core, up to 4; 0: compress on the main thread).', min: 0, max: 16 }),
    'tape-size': Flags.string({ helpValue: 'SIZE', description: 'Capacity of each tape (e.g. 800G): continue on the next tape when full.' }),
    'new-tape': Flags.boolean({ description: 'With tape:DIR, create tape directories that do not exist yet (a new, empty tape); without it a missing tape is an error.' }),
    'record-size': Flags.string({ helpValue: 'BYTES', description: 'Tape record size: every write to a tape is this size [default: 10K].' }),
    force: Flags.boolean({ description: 'Replace an existing target file (on a peer too); write over a block device holding a file system or partition table (never one that is mounted or otherwise in use: exit 7).' }),
    multiplex: Flags.boolean({ description: 'Dump every volume given at once onto one tape file per tape (tape:DIR only), their streams interleaved, with a backup log.' }),
    ...encryptFlag,
    ...keyFlags,
    ...peerFlags,
    ...s3Flags,
  };

  async run() {
    const { args, raw, flags } = await this.parse(Dump);
    const volumes = argumentsInOrder(raw);
    if (volumes.length > 1 && !flags.multiplex) throw new UsageError(`${volumes.length} volumes given: one dump takes one volume`, 'dump several volumes together onto a tape with --multiplex');
    if (flags['dry-run'] && volumes.length > 1) throw new UsageError('--dry-run shows the storage image of one volume', 'run it once for each volume');
    if (flags.multiplex && !flags['dry-run']) return this.runMultiplexed(volumes, flags);
    if (!flags['dry-run'] && !flags.to) throw new UsageError('--to is required (or --dry-run)');
    if (flags.to === '-' && this.jsonEnabled()) throw new UsageError('--json cannot be combined with --to -: the stream goes to stdout');
    const key = flags['dry-run'] ? null : await dumpKeyFromFlags(flags);
    const catalog = openCatalog(flags.catalog);
    const tapeSize = flags['tape-size'] ? parseSize(flags['tape-size'], 'tape size') : undefined;
    // the tape flags with a target that is no tape: a mistake (a forgotten tape: prefix), never ignored
    if (flags.to !== undefined && !flags.to.startsWith('tape:')) {
      const given = (['tape-size', 'record-size', 'new-tape'] as const).filter((f) => flags[f] !== undefined && flags[f] !== false);
      if (given.length) throw new UsageError(`--${given.join(', --')} ${given.length > 1 ? 'are' : 'is'} for tape targets, and --to ${flags.to} is not one`, 'write to a tape with --to tape:DIR (or tape:/dev/nst0), or leave the tape flags out');
    }
    if (flags.to !== undefined) refuseS3FlagsWithout(flags, [flags.to], `--to ${flags.to}`);
    const recordSize = parseSize(flags['record-size'] ?? '10K', 'record size');
    // a dry run sends nothing: the peer flags may stay on the command line, unchecked
    const peer = peerClientOptions(flags, flags.to !== undefined && isPeerSpec(flags.to) && !flags['dry-run'] ? [flags.to] : [], flags['dry-run']);
    if (!flags['dry-run']) refuseOutputOverInputs(flags.to!, dumpInputs(volumes, flags, catalog));
    const stop = { late: null as NodeJS.Signals | null };
    const result = await stoppableBySignals((signal) =>
      dumpVolumeAt(
        args.volume,
        (streamId) => targetFor(flags.to!, { force: flags.force, tapeSize, recordSize, streamId, nextTape: nextTapePrompt(), notice: sayOnStderr, peer, newTape: flags['new-tape'] === true, s3: s3Options(flags) }),
        {
          ...streamFlags(flags),
          catalog,
          dryRun: flags['dry-run'],
          key,
          signal,
        },
        this.progress(),
      ),
      (sig) => (stop.late = sig),
    );
    const what = `level ${result.level} of ${args.volume}: ${result.expression}: ${result.blocks} blocks, ${formatSize(result.bytes)}, ${result.extents} extents`;
    if (result.dryRun) this.say(`dry run: ${what}`);
    else {
      const where = flags.to === '-' ? 'stdout' : flags.to;
      const summary = `dumped ${what} -> ${where} (${formatSize(result.streamBytes)}${key ? ' encrypted' : ''} stream, sha256 ${result.sha256?.slice(0, 16)}...)${result.recorded === false ? `: ${notRecordedNote(where, result)}` : ''}`;
      // the stream is on stdout: the same summary goes to stderr, as a line of information
      // (not "imgstream: ...", which is how errors read)
      if (flags.to === '-') process.stderr.write(`${summary}\n`);
      else this.say(summary);
      if (stop.late) sayOnStderr(lateStopLine(stop.late, 'the dump', 'its stream was complete', result.recorded !== false));
    }
    return result;
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private async runMultiplexed(volumes: string[], flags: Record<string, any>): Promise<MultiplexDumpResult> {
    if (!flags.to?.startsWith('tape:')) throw new UsageError('--multiplex writes to a tape: give --to tape:DIR[,DIR...]', 'several dumps share a tape file only on tape');
    refuseS3FlagsWithout(flags, [flags.to], `--to ${flags.to}`);
    const spec = parseTapeSpec(flags.to);
    if (spec.file !== undefined) throw new UsageError(`${flags.to}: a dump goes to the next tape file; #N is for reading`, 'give tape:DIR');
    const key = await dumpKeyFromFlags(flags);
    const catalog = openCatalog(flags.catalog);
    refuseOutputOverInputs(flags.to, dumpInputs(volumes, flags, catalog));
    const stop = { late: null as NodeJS.Signals | null };
    const result = await stoppableBySignals((signal) => multiplexDump(
      volumes,
      { tapes: spec.tapes, tapeSize: flags['tape-size'] ? parseSize(flags['tape-size'], 'tape size') : undefined, recordSize: parseSize(flags['record-size'] ?? '10K', 'record size'), nextTape: nextTapePrompt(), notice: sayOnStderr, newTape: flags['new-tape'] === true },
      {
        ...streamFlags(flags),
        catalog,
        key,
        signal,
      },
      this.progress(),
    ), (sig) => (stop.late = sig));
    const where = result.files.map((f) => `${f.tape}${f.number !== undefined ? ` file ${f.number}` : ''}`).join(', ');
    for (const s of result.sources) {
      if (s.dump) this.say(`dumped level ${s.dump.level} of ${s.volume}: ${s.dump.expression}: ${s.dump.blocks} blocks, ${formatSize(s.dump.bytes)} -> ${formatSize(s.dump.streamBytes)}${key ? ' encrypted' : ''} stream${s.dump.recorded === false ? `: ${notRecordedNote(flags.to, s.dump)}` : ''}`);
      else this.say(`FAILED ${s.volume}: ${unnamed(s.volume, s.error?.message ?? '')}`);
    }
    const idle = result.elapsedMs > 0 ? ((100 * result.idleMs) / result.elapsedMs).toFixed(1) : '0.0';
    this.say(`multiplexed onto tape ${where} in ${(result.elapsedMs / 1000).toFixed(1)} s, the tape idle ${idle}% of it (imgstream tape log shows the backup log)`);
    const failed = result.sources.filter((s) => !s.ok);
    // a signal that stopped sources is said by their errors; one that came after every stream was complete, here
    if (stop.late && !failed.some((f) => STOPPED.has(f.error!.code))) {
      const recorded = result.sources.every((s) => s.dump?.recorded !== false);
      sayOnStderr(lateStopLine(stop.late, 'the multiplexed dump', failed.length ? 'every stream had ended' : 'every stream was complete', recorded));
    }
    if (failed.length > 0) {
      const done = result.sources.length - failed.length;
      throw errorOfCode(
        failed[0].error!.code,
        `multiplexed dump: ${failed.map((f) => `${f.volume} failed: ${unnamed(f.volume, f.error!.message)}`).join('; ')}; the other ${done} dump(s) are complete${result.sources.some((x) => x.dump?.recorded === false) ? '' : ' and recorded'}`,
        failed[0].error!.hint,
        result,
      );
    }
    return result;
  }
}

/** Error codes of a dump a stop signal stopped. */
const STOPPED = new Set(['interrupted', 'hangup', 'terminated']);

/** A line of information on stderr (not "imgstream: ...", which is how errors read): stdout may carry the stream, or --json. */
function sayOnStderr(line: string): void {
  process.stderr.write(`${line}\n`);
}

/** A source's error message without the volume name it begins with (the line names the volume once). */
function unnamed(volume: string, message: string): string {
  return message.startsWith(`${volume}: `) ? message.slice(volume.length + 2) : message;
}

/** What a dump reads or keeps, which its output must not be. */
function dumpInputs(volumes: string[], flags: { 'key-file'?: string; 'passphrase-file'?: string }, catalog: Catalog): DumpInput[] {
  return [
    ...volumes.map((v) => ({ what: 'the volume being dumped', path: v })),
    ...(flags['key-file'] !== undefined ? [{ what: 'the key file (--key-file)', path: flags['key-file'] }] : []),
    ...(flags['passphrase-file'] !== undefined ? [{ what: 'the passphrase file (--passphrase-file)', path: flags['passphrase-file'] }] : []),
    { what: 'the catalog', path: catalog.file },
  ];
}

/** What a dump's flags say of the stream, single or multiplexed: level, top, order, compression, threads. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
function streamFlags(flags: Record<string, any>) {
  return {
    level: flags.level as number,
    snapshot: flags.snapshot as string | undefined,
    order: flags.order,
    compression: flags.compress === 'none' ? { codec: 'none' as const } : { codec: 'zstd' as const, level: flags['compress-level'] as number },
    threads: (flags.threads as number | undefined) ?? defaultThreads(),
  };
}

/** A dump to a device that keeps nothing: not recorded; the snapshot it took is deleted, one the user named is not. */
function notRecordedNote(where: string | undefined, r: DumpResult): string {
  return `not recorded in the catalog (${where} keeps nothing: no later level builds on it), ${r.snapshotDeleted !== undefined ? 'its snapshot deleted' : `snapshot "${r.top}" kept`}`;
}
