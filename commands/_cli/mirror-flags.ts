// Flags shared by the mirror and replicate commands.
import { Flags } from '@oclif/core';
import { parseSize } from '../../src/core/size.js';
import { MirrorState } from '../../src/mirror/state.js';

export const stateFlag = Flags.string({
  helpValue: 'FILE',
  description: 'Mirror state file (a missing or empty one is started; a file that is not one is refused, never replaced) [default: $IMGSTREAM_MIRROR_STATE, else $XDG_STATE_HOME/imgstream/mirrors.json, else ~/.local/state/imgstream/mirrors.json].',
});

export const limitRateFlag = Flags.string({ helpValue: 'RATE', description: 'Send at most RATE bytes per second on average (e.g. 20M); default: no limit.' });

/** The state file, read once now: one that is not a mirror state is refused before anything happens. */
export function openState(flag: string | undefined): MirrorState {
  return (flag ? new MirrorState(flag) : new MirrorState()).check();
}

export function parseRate(text: string | undefined): number {
  return text === undefined ? 0 : parseSize(text, 'rate');
}
