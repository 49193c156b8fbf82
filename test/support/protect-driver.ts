// Ships the model's intervals (protect-model.ts) to a local protection destination, as a
// real process the tests can kill -9: seeds it when needed, then appends from the
// destination's next interval up to COUNT, printing "appended N" after each.
//   node dist/test/support/protect-driver.js DEST SEED COUNT KEEP_MS [SNAPSHOT_EVERY]
// DEST may be peer://HOST:PORT/NAME: a daemon started with --plain and the token file
// named by PROTECT_DRIVER_TOKEN. PROTECT_DRIVER_DELAY_MS pauses after each append;
// PROTECT_DRIVER_ROTATE=N names snapshots rot0..rotN-1 in turn.
import { ImgstreamError } from '../../src/core/errors.js';
import { openProtectDestination } from '../../src/journal/destination.js';
import { modelSource, seedImage, shippedInterval } from './protect-model.js';

const [dest, seedText, countText, keepText, everyText] = process.argv.slice(2);
const seed = Number(seedText);
const count = Number(countText);
const token = process.env.PROTECT_DRIVER_TOKEN;
/** A pause after each append (a source that writes at a human pace). */
const delayMs = Number(process.env.PROTECT_DRIVER_DELAY_MS ?? 0);
const d = openProtectDestination(dest, token ? { tokenFile: token, plain: true } : undefined);
try {
  let state = await d.open(modelSource(seed), Number(keepText));
  if (!state.seeded) state = await d.seed(seedImage(seed));
  while (state.intervalSeq < count) {
    state = await d.append(shippedInterval(seed, state.intervalSeq + 1, { snapshotEvery: Number(everyText ?? 0), rotate: Number(process.env.PROTECT_DRIVER_ROTATE ?? 0) }));
    process.stdout.write(`appended ${state.intervalSeq}\n`);
    if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
  }
  await d.close();
} catch (err) {
  if (!(err instanceof ImgstreamError)) throw err;
  process.stderr.write(`protect-driver: ${err.message}\n`);
  process.exitCode = err.exitCode;
}
