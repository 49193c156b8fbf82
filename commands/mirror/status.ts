import { Args } from '@oclif/core';
import chalk from 'chalk';
import { ImgstreamCommand } from '../_cli/base.js';
import { openState, stateFlag } from '../_cli/mirror-flags.js';
import { sourceUuid } from '../../src/mirror/run.js';
import { formatSize } from '../../src/core/size.js';
import { reportedState, type Relationship, type ReportedState } from '../../src/mirror/state.js';
import { peerFlagsNote } from '../../src/peer/index.js';

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${(s / 3600).toFixed(1)}h`;
  return `${(s / 86400).toFixed(1)}d`;
}

/** What became of a stopped transfer, below the latest ones: stopped by a signal, or its process killed outright. */
function stoppedLine(r: Relationship): string {
  const a = r.lastAttempt;
  // a resync is never resumed, and updates are refused until one completes
  const again = 'the mirror stays broken off until a resync completes (run it again: it starts over)';
  if (!a?.stoppedBy) return `  its process ${a?.pid} is gone (killed outright): ${a?.resync ? again : 'the next update resumes the transfer'}`;
  const p = r.pending;
  if (a.resync) return `  ${a.finished}  ${p ? `${p.mode} to ${p.top.name}: ` : ''}resync stopped by ${a.stoppedBy}${p ? ` part way, ${formatSize(p.bytesSent ?? 0)} sent` : ''}: ${again}`;
  if (!p) return `  ${a.finished}  stopped by ${a.stoppedBy} before its transfer began: the next update starts one`;
  return `  ${a.finished}  ${p.mode} to ${p.top.name}: stopped by ${a.stoppedBy} part way, ${formatSize(p.bytesSent ?? 0)} sent: the next update resumes it`;
}

export default class MirrorStatus extends ImgstreamCommand {
  static override summary = "Show a volume's mirror relationships: lag, last transfer, bytes, state.";
  static override description = `One line per destination this volume file was mirrored to: its state (idle, transferring, failed, broken; missing: a destination file no longer there, deleted or moved, also after a stopped transfer, so the next update makes a full copy; stopped: a transfer stopped by a signal, Ctrl-C or systemctl stop, or whose process on this host is gone, killed outright; the next update resumes it), the lag (how old the state the destination holds is: the time since its snapshot was taken), the last successful transfer (when, its mode, blocks and bytes sent, how long it took), and the last error. Below it, the latest transfers one per line (a run that finished a transfer an earlier run left part way, then brought the destination to now, made two): blocks, wire bytes (of that run, and of every attempt for a resumed one), compression. When a stopped transfer keeps data at the destination to resume from (after a full disk, say), how much and the command that drops it (a resync never resumes: what one kept goes when the next resync starts over). Relationships belong to the volume file (its path): a mirror, and each hop of a cascade, shows its own destinations, not its source's; a mirror with none of its own shows the relationship that feeds it, from its source's record (--json: mirrorOf). With --json, the relationships as recorded (recent, partial), plus lagSeconds.`;
  static override examples = ['<%= config.bin %> mirror status vm.vol', '<%= config.bin %> mirror status vm.vol --json'];
  static override args = { volume: Args.string({ description: 'Source volume (or a mirror, to see what feeds it).', required: true }) };
  static override flags = { state: stateFlag };

  async run() {
    const { args, flags } = await this.parse(MirrorStatus);
    const uuid = await sourceUuid(args.volume);
    const now = Date.now();
    const state = openState(flags.state);
    const withLag = (r: Relationship) => ({ ...r, state: reportedState(r), lagSeconds: r.lastSuccess ? Math.round((now - r.lastSuccess.top.createdMs) / 1000) : null });
    const rels = state.relationshipsOf(uuid, args.volume).map(withLag);
    // a mirror asked about from its side: the relationship that feeds it, as its source shows it
    const feeding = rels.length === 0 ? state.relationshipsTo(uuid, args.volume).map(withLag) : [];
    if (feeding.length > 0) {
      for (const r of feeding) {
        this.say(`${args.volume}: a mirror destination, fed by ${r.volume.path}:`);
        this.relationship(r, r.volume.path);
      }
    } else if (rels.length === 0) {
      this.say(`${args.volume}: no mirror relationships (start one with: imgstream mirror update ${args.volume} --to DEST)`);
    }
    for (const r of rels) this.relationship(r, args.volume);
    return { volume: args.volume, uuid, relationships: rels, ...(feeding.length > 0 ? { mirrorOf: feeding } : {}) };
  }

  private relationship(r: Omit<Relationship, 'state'> & { state: ReportedState; lagSeconds: number | null }, source: string): void {
    const state = r.state === 'idle' ? chalk.green(r.state) : r.state === 'transferring' || r.state === 'stopped' ? chalk.yellow(r.state) : chalk.red(r.state);
    const last = r.lastSuccess
      ? `last ${r.lastSuccess.finished} (${r.lastSuccess.mode}, ${r.lastSuccess.blocks} blocks, ${formatSize(r.lastSuccess.bytes)}, ${(r.lastSuccess.durationMs / 1000).toFixed(1)}s), lag ${age(r.lagSeconds! * 1000)}`
      : 'never transferred';
    // a stopped transfer is no error: the line below the latest transfers says what became of it
    this.say(`${r.destination}  ${state}  ${last}${r.lastAttempt?.error && r.state !== 'idle' && r.state !== 'stopped' ? `  error: ${r.lastAttempt.error}` : ''}`);
    for (const t of (r.recent ?? []).slice(-3)) {
      const resumed = t.resumedRecords ? `, resumed after ${t.resumedRecords} records, ${formatSize(t.totalBytes)} by every attempt` : '';
      this.say(`  ${t.finished}  ${t.mode} to ${t.top.name}: ${t.blocks} blocks (${t.sentBlocks} sent by its last run), ${formatSize(t.bytes)} sent${t.compression === 'zstd' ? ' (zstd)' : ''}${resumed}, ${(t.durationMs / 1000).toFixed(1)}s`);
    }
    if (r.state === 'stopped') this.say(stoppedLine(r as Relationship));
    if (r.state === 'missing') this.say(`  ${r.destination} is gone (deleted or moved): the next update makes a full copy there`);
    // a resync is never resumed: what one kept goes when the next starts over
    const keptFor = r.lastAttempt?.resync ? 'by a resync that did not complete (the next one starts over and drops it)' : 'to resume';
    if (r.partial && r.partial.bytes > 0) this.say(`  partial transfer kept at the destination ${keptFor}: ${formatSize(r.partial.bytes)} (since ${r.partial.since}); drop it with: imgstream mirror abandon ${source} --to ${r.destination}${peerFlagsNote(r.destination)}`);
  }
}
