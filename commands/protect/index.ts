import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import { peerClientOptions, peerFlags as sharedPeerFlags, type PeerFlagValues } from '../_cli/peer-flags.js';
import { peerFlags } from '../_cli/mirror-peer.js';
import { InvalidInputError } from '../../src/core/errors.js';
import { openProtectDestination } from '../../src/journal/destination.js';
import { protect, type ProtectEvent } from '../../src/journal/shipper.js';
import { isPeerSpec } from '../../src/media/resolve.js';
import { formatSize } from '../../src/core/size.js';
import { tuneGcForStreaming } from '../../src/core/gc-tuning.js';
import { formatDuration, parseDuration } from '../_cli/duration.js';
import { onStopSignals } from '../_cli/stop-signals.js';
import { OUTPUT_FAILED, stopOnOutputFailure } from '../../src/cli/output-failure.js';

export default class Protect extends ImgstreamCommand {
  static override summary = 'Ship a volume\'s write journal to a protection destination continuously (restore as of any moment).';
  static override description = `Continuous protection. The volume must be served with "serve nbd VOL --journal": the server time-stamps and journals every write, trim and write-zeroes it acknowledges. This command ships that journal to DEST (a directory on this machine, or peer://HOST:PORT/NAME on an imgstream peer daemon) as it grows, in intervals of --interval: within one interval only the last version of each block travels, so a block rewritten a thousand times in a second costs one block, and a stretch trimmed or zeroed (a guest's fstrim of the whole disk) travels as one run of zeros, not block by block. The destination keeps --keep of history; "restore --to NEW --as-of TIME --from DEST" then rebuilds the disk as it was at the end of the last interval at or before TIME (every write acknowledged before that moment, none after), and "protect status DEST" lists the window and recovery points. Snapshots taken on the source end an interval and arrive as snapshots; a snapshot renamed on the source answers to its new name at the destination from the next interval on (the old name is refused, naming the new one), and one deleted on the source stays there under its name. Those snapshots outlive --keep in the destination's base (until a snapshot of the same name replaces one, or room is needed), so its base grows by the old versions they pin, up to 4 times the disk.

The first run sends a seed (the whole mapped disk, from a snapshot the server takes for it). When the destination is unreachable, or its file system is full (here or on the daemon: said, and retried until space is freed there), the journal accumulates in VOL.journal/ up to the server's --journal-size; past it the journal overflows into a list of changed blocks and the next transfer is a resync of just those blocks (reported, never silent). A run that is stopped or killed resumes where the destination acknowledged. While nothing is written the destination's window still moves forward (about once per interval), so a time just before now is always in it. One protect at a time ships a volume's journal (a second one exits 7); protecting to another destination later works, but the first one, if resumed after the journal was trimmed past it, gets a resync of every block. A disk changed without its journal (served without --journal, imported into) is never passed over: protect stops with the "invalid-input" code (4) instead of claiming recovery points that lack the change.

One line per interval shipped (with --json one JSON object: seq, start, end, blocks, bytes, records, lagMs, bytesPerSecond), and the lag, the age of the oldest write not yet shipped. SIGINT or SIGTERM lets the interval in flight finish (or be abandoned: the destination keeps its previous state) and exits 0. A write to stdout that fails (its reader gone away, as with | head; a full disk) stops it the same way, and it exits 10 with one line ("writing the output: EPIPE: ... (so it stopped, as on SIGTERM)").`;
  static override examples = [
    '<%= config.bin %> serve nbd vm.vol --socket /run/vm.sock --journal &',
    '<%= config.bin %> protect vm.vol --to /backup/vm.cdp --interval 1s --keep 24h',
    '<%= config.bin %> protect vm.vol --to peer://dr.example:7411/vm.cdp --token-file token --tls-ca ca.pem --json',
    '<%= config.bin %> protect status /backup/vm.cdp',
    '<%= config.bin %> restore --to vm-1015.vol --as-of 2026-12-03T10:15:02.250Z --from /backup/vm.cdp',
  ];
  static override args = { volume: Args.string({ description: 'Volume served with --journal (or with a journal from an earlier serve).', required: true }) };
  static override flags = {
    to: Flags.string({ helpValue: 'DEST', char: 't', description: 'Protection destination: a directory (created on first use), or peer://HOST:PORT/NAME.', required: true }),
    interval: Flags.string({ helpValue: 'DURATION', description: 'Length of an interval: the granularity of recovery points (100ms, 1s, 30s, 5m).', default: '1s' }),
    keep: Flags.string({ helpValue: 'DURATION', description: 'History the destination keeps; older intervals are folded into its base (30m, 24h, 7d). Without it, the destination keeps what it was told before [24h for a new one]; a change is said in one line.' }),
    once: Flags.boolean({ description: 'Ship what the journal holds now, then exit (a resync a volume nobody serves needs is taken from the volume itself, held meanwhile).' }),
    ...peerFlags,
    // a WAN link shared with other traffic: the shipper falls behind rather than take it all (the journal holds the rest, up to its size)
    'limit-rate': sharedPeerFlags['limit-rate'],
  };

  async run() {
    const { args, flags } = await this.parse(Protect);
    tuneGcForStreaming(); // long-running, a small heap (see gc-tuning.ts)
    const intervalMs = parseDuration(flags.interval, '--interval', 100);
    // no --keep: a destination keeps what it was told before (24h when new)
    const keepMs = flags.keep === undefined ? null : parseDuration(flags.keep, '--keep', 1000);
    if (keepMs !== null && keepMs < intervalMs) throw new InvalidInputError(`--keep ${flags.keep} is shorter than --interval ${flags.interval}`);
    const peer = peerClientOptions(flags as PeerFlagValues, isPeerSpec(flags.to) ? [flags.to] : [], false, [flags.to]);
    const destination = openProtectDestination(flags.to, peer);
    const stop = new AbortController();
    const off = onStopSignals(() => stop.abort(), ['SIGINT', 'SIGTERM']);
    // its log's reader gone away (| head), or its disk full: stopped as by SIGTERM, then exit 10 (main)
    const offOutput = stopOnOutputFailure(() => stop.abort(OUTPUT_FAILED));
    const json = this.jsonEnabled();
    try {
      const sum = await protect({ volume: args.volume, destination, intervalMs, keepMs, signal: stop.signal, once: flags.once === true }, (e) => this.event(e, json));
      if (json) process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), event: 'stopped', ...sum })}\n`);
      else this.log(`${new Date().toISOString()} stopped: ${sum.intervals} interval${sum.intervals === 1 ? '' : 's'}${sum.resyncs ? ` (${sum.resyncs} resync${sum.resyncs === 1 ? '' : 's'})` : ''}, ${formatSize(sum.bytes)} shipped; ${destination.description} holds the journal up to record ${sum.journalTo}`);
    } finally {
      off();
      offOutput();
    }
  }

  private event(e: ProtectEvent, json: boolean): void {
    const time = new Date().toISOString();
    if (json) {
      process.stdout.write(`${JSON.stringify({ time, ...e })}\n`);
      return;
    }
    let text: string;
    switch (e.event) {
      case 'seed':
        text = `seed: ${e.blocks} blocks (${formatSize(e.bytes)}) as of ${e.time}`;
        break;
      case 'interval':
        text = `${e.kind === 'resync' ? 'resync' : 'interval'} ${e.seq} ${e.start} .. ${e.end}: ${e.blocks} blocks (${formatSize(e.bytes)}) from ${e.records} writes${(e.renames ?? []).map((r) => `, snapshot ${r.from} renamed to ${r.to}`).join('')}${e.snapshots.length ? `, snapshot ${e.snapshots.join(', ')}` : ''}; lag ${(e.lagMs / 1000).toFixed(2)} s, ${formatSize(e.bytesPerSecond)}/s`;
        break;
      case 'overflow':
        text = e.full
          ? `the journal no longer holds the records after ${e.after}, where the destination ends (trimmed for another destination, or moved aside): resyncing every block (${e.blocks})`
          : e.reason
            ? `${e.reason}: resyncing ${e.blocks} changed blocks (the destination holds records up to ${e.after})`
            : `the journal overflowed: resyncing ${e.blocks} changed blocks (the destination holds records up to ${e.after})`;
        if (e.lostSnapshots.length) text += `; snapshot${e.lostSnapshots.length > 1 ? 's' : ''} ${e.lostSnapshots.join(', ')}, taken while it was overflowed, do${e.lostSnapshots.length > 1 ? '' : 'es'} not arrive at the destination (the journal no longer holds the disk as of ${e.lostSnapshots.length > 1 ? 'them' : 'it'}; dump ${e.lostSnapshots.length > 1 ? 'them' : 'it'} to keep ${e.lostSnapshots.length > 1 ? 'them' : 'it'})`;
        break;
      case 'damaged':
        text = e.base
          ? `the destination's base volume is damaged (${e.what}): the recovery points that read those blocks cannot be rebuilt; resyncing every block (${e.blocks}), from which they can again`
          : `the destination's interval ${e.seq} is damaged (${e.what}): its recovery points and later ones cannot be rebuilt; resyncing every block (${e.blocks}), from which they can again`;
        break;
      case 'retention':
        text = `the destination keeps ${formatDuration(e.keepMs)} of history from now on (it kept ${formatDuration(e.keptMs)})${e.keepMs < e.keptMs ? ': older intervals are folded into its base' : ''}`;
        break;
      case 'waiting':
        text = `waiting: ${e.reason}`;
        break;
    }
    process.stdout.write(`${time} ${text}\n`);
  }
}
