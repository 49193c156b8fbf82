import { Args, Flags } from '@oclif/core';
import { ImgstreamCommand } from '../_cli/base.js';
import fs from 'node:fs';
import { protectStatus, verifiedProtectStatus } from '../../src/journal/protect-status.js';
import { CorruptError, InvalidInputError } from '../../src/core/errors.js';
import { journalStatus } from '../../src/journal/journal-status.js';
import { journalDirOf } from '../../src/journal/journal-files.js';
import { peerProtectStatus } from '../../src/journal/peer-destination.js';
import { isPeerSpec } from '../../src/media/resolve.js';
import { peerClientOptions, peerFlags } from '../_cli/peer-flags.js';
import { formatSize } from '../../src/core/size.js';
import { formatDuration } from '../_cli/duration.js';


export default class ProtectStatus extends ImgstreamCommand {
  static override summary = 'Show what a protection destination holds (the window, the recovery points, storage), or how far a volume\'s journal is shipped.';
  static override description = `Reads a protection destination (the directory imgstream protect --to DIR writes) without disturbing the shipper that may be appending to it: the volume it protects, the recovery window (the oldest and newest times restore --as-of accepts), the number of recovery points (the base's, then one per interval held), the storage of the base volume and of the intervals, the snapshots that arrived from the source, the gaps (spans before a resync, after an outage or a journal overflow, with no recovery point inside: restore --as-of refuses times in them), and the shipper's pid when one holds the destination. Status reads interval headers only; with --verify it reads every block too, as a scrub does: each interval's index and every block of data in it against their checksums, the base volume's structure (its root records, maps and planes, as volume check does), and every block of the base's disk against DEST/base.sums (the checksums the destination keeps of the base's data; one seeded by an older imgstream has none, and says so). That costs reading the whole destination (on a peer, the daemon reads it; only the answer crosses the network), takes no lock a shipper needs, and exits with the "corrupt" code when it finds damage, naming each damaged file and its first bad block. A damaged interval (or base block) that no full resync has passed over yet is left for the shipper in DEST/scrub.json (the one file --verify writes): the destination takes it up at its next transfer (a running protect's included), checks that interval itself, and asks its shipper for a full resync (every block of the disk, the "damaged" event), from which the recovery points rebuild again. With --points, every recovery point's time, blocks and snapshots; with --json, all of it, the list of recovery points included.

Given the protected volume instead (a file or block device with a write journal; a volume without one is refused as no destination), it shows the source's side: the journal's size and records, the destination and the record and time up to which it acknowledged, the records not shipped yet, the writes among them and the lag (the age of the oldest unshipped write; after an overflow, from the destination's last point), an overflow waiting for a resync, and the shipper's pid.`;
  static override examples = ['<%= config.bin %> protect status /backup/vm1.cdp', '<%= config.bin %> protect status vm1.vol', '<%= config.bin %> protect status /backup/vm1.cdp --points', '<%= config.bin %> protect status /backup/vm1.cdp --json', '<%= config.bin %> protect status /backup/vm1.cdp --verify', '<%= config.bin %> protect status peer://backup1:7420/vm1.cdp --token-file /etc/imgstream/peer.token --tls-fingerprint sha256:HEX'];
  static override args = { destination: Args.string({ description: 'Protection destination: a directory, or peer://HOST:PORT/NAME; or the protected volume.', required: true }) };
  static override flags = {
    points: Flags.boolean({ description: 'List every recovery point.' }),
    verify: Flags.boolean({ description: 'Read every block the destination holds and check it (intervals against their checksums, the base volume\'s structure and its data against base.sums); exits "corrupt" on damage.' }),
    ...peerFlags,
  };

  async run() {
    const { args, flags } = await this.parse(ProtectStatus);
    if (!isPeerSpec(args.destination) && isJournaledVolume(args.destination)) {
      if (flags.verify) throw new InvalidInputError(`${args.destination}: --verify reads a protection destination, and this is the protected volume`, `give the destination: imgstream protect status DEST --verify; imgstream volume check ${args.destination} checks the volume itself`);
      return this.source(args.destination);
    }
    const peer = peerClientOptions(flags, isPeerSpec(args.destination) ? [args.destination] : []);
    const local = (dir: string) => (flags.verify ? verifiedProtectStatus(dir) : protectStatus(dir));
    const st = isPeerSpec(args.destination) ? await peerProtectStatus(args.destination, peer!, flags.verify) : await local(args.destination);
    this.say(`${st.destination}: protects ${st.source.path} (${st.source.uuid.slice(0, 8)}, ${formatSize(st.source.logicalSize)}, ${st.source.blockSize}-byte blocks), keeps ${formatDuration(st.keepMs)}`);
    if (!st.window) this.say('  not seeded yet: no recovery point');
    else this.say(`  window ${st.window.start} to ${st.window.end} (its end ${formatDuration(Math.max(0, Date.now() - Date.parse(st.window.end)))} ago): ${st.recoveryPoints} recovery point${st.recoveryPoints === 1 ? '' : 's'}`);
    const gaps = st.gaps ?? [];
    if (gaps.length) this.say(`  ${gaps.length} gap${gaps.length > 1 ? 's' : ''} with no recovery point inside (resyncs): ${gaps.map((g) => `${g.from} to ${g.to}`).join(', ')}`);
    this.say(`  base: ${formatSize(st.base.bytes)} (up to interval ${st.base.seq}${st.foldingTo !== null ? `, folding up to ${st.foldingTo}` : ''}); intervals: ${st.intervals.count}, ${formatSize(st.intervals.bytes)}; journal record ${st.journalTo}`);
    const snaps = [...st.base.snapshots, ...st.points.flatMap((p) => p.snapshots)];
    if (snaps.length) this.say(`  snapshots: ${snaps.join(', ')}`);
    for (const d of st.damaged) this.say(`  DAMAGED: ${d}`);
    const held = st.retentionHeld;
    if (held) {
      this.say(
        held.resync
          ? `  retention holds before interval ${held.seq} (damaged) until it folds the full resync of ${held.resync}: the points from that resync on rebuild again`
          : `  retention holds before interval ${held.seq} (damaged): its recovery points and later ones cannot be rebuilt until a full resync, which protect sends when it next runs (the volume served with --journal)`,
      );
    }
    if (st.baseDamaged) {
      this.say(
        st.baseDamaged.resync
          ? `  the base's damaged blocks are rewritten when retention folds the full resync of ${st.baseDamaged.resync}: the points from that resync on rebuild now`
          : '  the recovery points that read the base\'s damaged blocks cannot be rebuilt until a full resync, which protect sends when it next runs (the volume served with --journal)',
      );
    }
    this.say(`  shipper: ${st.shipperSession ? 'connected through the peer daemon' : st.shipper === null ? 'none' : `pid ${st.shipper}`}`);
    if (flags.points) for (const p of st.points) this.say(`  ${p.time}  ${p.kind === 'base' ? 'base' : `#${p.seq} ${p.kind}, ${p.blocks} blocks`}${p.snapshots.length ? `  snapshots: ${p.snapshots.join(', ')}` : ''}${p.gapFrom ? `  (no point since ${p.gapFrom})` : ''}${p.damaged ? '  DAMAGED' : ''}`);
    const v = st.verified;
    if (v && !st.seeded) this.say('  verified: nothing to read (not seeded yet)');
    else if (v) {
      const folded = v.folded ? `; ${v.folded} folded into the base while it read` : '';
      this.say(`  verified: ${v.intervals} interval${v.intervals === 1 ? '' : 's'} read whole (${v.blocks} block${v.blocks === 1 ? '' : 's'} of data, ${formatSize(v.bytes)}), base volume ${v.base.ok ? 'checks clean' : `has ${v.base.problems.length} problem${v.base.problems.length === 1 ? '' : 's'}`}${baseData(v.base)}${folded}`);
      if (v.resync && 'recorded' in v.resync) this.say(`  full resync asked for (${v.resync.recorded}): protect's next transfer, a running one's too, sends every block of the disk, and the recovery points from it on rebuild again`);
      if (v.resync && 'notRecorded' in v.resync) this.say(`  full resync NOT asked for (${v.resync.notRecorded}): a fold that reaches the damaged interval asks for one`);
    }
    if (flags.verify && st.damaged.length > 0) {
      // what can still be rebuilt: the points before the first damaged interval, or none (the base, or an interval a fold still has to apply)
      // a full resync after the damage holds the whole disk again: the points from it on can be rebuilt too
      const runs = (v?.lost ?? []).map((r) => (r.after === null ? `up to ${r.before}` : r.before === null ? `after ${r.after}` : `after ${r.after} and before ${r.before}`));
      const asked = v?.resync !== undefined && 'recorded' in v.resync;
      const reach = !v?.rebuildableTo
        ? asked
          ? 'no recovery point can be rebuilt now'
          : `no recovery point can be rebuilt: move ${st.destination} aside and protect to a new destination, which seeds it anew`
        : (v.lost ?? []).some((r) => r.before !== null)
          ? `the recovery points ${runs.join(', and ')} cannot be rebuilt; every other one can (a full resync holds the whole disk again)`
          : `recovery points up to ${v.rebuildableTo} can still be rebuilt: restore as of that time or earlier`;
      const resync = v?.resync && 'recorded' in v.resync ? '; protect\'s next transfer sends a full resync, from which they rebuild again' : '';
      throw new CorruptError(`${st.destination}: --verify found ${st.damaged.length} damaged file${st.damaged.length === 1 ? '' : 's'}: ${st.damaged[0]}`, this.jsonEnabled() ? `${reach}${resync}; the status is in error.details` : `${reach}${resync}; see the DAMAGED lines above`).withDetails(st);
    }
    return st;
  }

  private source(volume: string) {
    const st = journalStatus(volume);
    const held = st.oldest === null || st.oldest > st.newest ? 'no records held' : `records ${st.oldest} to ${st.newest}`;
    this.say(`${volume}: write journal ${st.journal}: ${formatSize(st.bytes)} in ${st.segments} segment${st.segments === 1 ? '' : 's'}, ${held}`);
    // (the window's end: an interval's end, or later when the shipper claimed quiet time since)
    if (st.shipped) this.say(`  shipped to ${st.shipped.destination}: records up to ${st.shipped.journalTo} (last interval ${st.shipped.intervalSeq}), its window ending ${st.shipped.end}`);
    else this.say(`  never shipped: start with imgstream protect ${volume} --to DEST`);
    const u = st.unshipped;
    const since = u.oldest === null ? '' : u.dropped ? `, writes since ${u.oldest} (the destination's last point: the overflow dropped their records)` : `, the oldest write at ${u.oldest}`;
    this.say(`  not shipped yet: ${u.writes} write${u.writes === 1 ? '' : 's'}${since}: lag ${(u.lagMs / 1000).toFixed(1)} s`);
    if (st.overflow) this.say(`  OVERFLOWED: ${st.overflow.blocks} block${st.overflow.blocks === 1 ? '' : 's'} changed since record ${st.overflow.after} are waiting for a resync (the next protect sends just those)`);
    this.say(`  shipper: ${st.shipper === null ? 'none' : `pid ${st.shipper}`}`);
    if (st.damage) this.say(`  DAMAGED: ${st.damage}`);
    return st;
  }
}

/** A volume (a file or a block device) with a write journal, not a destination's directory: its journal's status is asked for. */
function isJournaledVolume(p: string): boolean {
  try {
    const st = fs.statSync(p);
    return (st.isFile() || st.isBlockDevice()) && fs.statSync(journalDirOf(p)).isDirectory();
  } catch {
    return false;
  }
}

/** What --verify says of the base's data against its checksums. */
function baseData(b: { dataBlocks: number; badBlocks: number[]; dataUnchecked?: string }): string {
  if (b.dataUnchecked) return ` (its data not checked: ${b.dataUnchecked})`;
  return b.badBlocks.length ? `, ${b.badBlocks.length} of its ${b.dataBlocks} blocks fail base.sums` : `, its ${b.dataBlocks} blocks match base.sums`;
}
