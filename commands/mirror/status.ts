import { Args } from '@oclif/core';
import chalk from 'chalk';
import { ImgstreamCommand } from '../_cli/base.js';
import { openState, stateFlag } from '../_cli/mirror-flags.js';
import { withVolume } from '../../src/volume/index.js';
import { formatSize } from '../../src/size.js';

function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.round(s / 60)}m`;
  if (s < 172800) return `${(s / 3600).toFixed(1)}h`;
  return `${(s / 86400).toFixed(1)}d`;
}

export default class MirrorStatus extends ImgstreamCommand {
  static override summary = "Show a volume's mirror relationships: lag, last transfer, bytes, state.";
  static override description = `One line per destination this volume was mirrored to: its state (idle, transferring, failed, broken), the lag (how old the state the destination holds is: the time since its snapshot was taken), the last successful transfer (when, its mode, blocks and bytes sent, how long it took), and the last error. With --json, the relationships as recorded, plus lagSeconds.`;
  static override examples = ['<%= config.bin %> mirror status vm.vol', '<%= config.bin %> mirror status vm.vol --json'];
  static override args = { volume: Args.string({ description: 'Source volume.', required: true }) };
  static override flags = { state: stateFlag };

  async run() {
    const { args, flags } = await this.parse(MirrorStatus);
    const uuid = await withVolume(args.volume, false, (vol) => vol.rootRecord.uuid);
    const now = Date.now();
    const rels = openState(flags.state)
      .relationships(uuid)
      .map((r) => ({ ...r, lagSeconds: r.lastSuccess ? Math.round((now - r.lastSuccess.top.createdMs) / 1000) : null }));
    if (rels.length === 0) this.say(`${args.volume}: no mirror relationships (start one with: imgstream mirror update ${args.volume} --to DEST)`);
    for (const r of rels) {
      const state = r.state === 'idle' ? chalk.green(r.state) : r.state === 'transferring' ? chalk.yellow(r.state) : chalk.red(r.state);
      const last = r.lastSuccess
        ? `last ${r.lastSuccess.finished} (${r.lastSuccess.mode}, ${r.lastSuccess.blocks} blocks, ${formatSize(r.lastSuccess.bytes)}, ${(r.lastSuccess.durationMs / 1000).toFixed(1)}s), lag ${age(r.lagSeconds! * 1000)}`
        : 'never transferred';
      this.say(`${r.destination}  ${state}  ${last}${r.lastAttempt?.error ? `  error: ${r.lastAttempt.error}` : ''}`);
    }
    return { volume: args.volume, uuid, relationships: rels };
  }
}
