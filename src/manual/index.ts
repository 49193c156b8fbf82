// The manual: the build-time bridge from the command definitions in commands/ to the man
// pages in man/. roff.ts and roff-text.ts are pure (plain data in, roff text out);
// generate.ts is the I/O side and the one file in src/ allowed to import @oclif/core,
// because it reads the definitions through oclif's own Config. Nothing here is loaded by
// the CLI at run time. May import ../errors.js (the exit code table) and node built-ins.
export {
  type EnvironmentVariable,
  type ExitStatusRow,
  type ManArgument,
  type ManCommand,
  type ManExample,
  type ManFlag,
  type ManPageRef,
  type ManTopic,
  type Manual,
  commandPageName,
  renderCommandPage,
  renderManual,
  renderOverviewPage,
} from './roff.js';
export { bold, escapeBackslashes, italic, literal, paragraphs, plainProse, prose, textLine } from './roff-text.js';
export { ABOUT, ENVIRONMENT, exitStatusRows } from './overview.js';
export { loadManual, renderAll, writeManual } from './generate.js';
