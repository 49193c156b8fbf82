// Temporary files a command removes when it is stopped by SIGINT, SIGHUP or SIGTERM
// (Ctrl-C, a closed terminal, kill): a restore's ".VOL.restoring-PID". Without this,
// Node's default handling ends the process at once and the half-written file stays until
// the next writer of that name clears it (kill -9 still leaves it: that next writer
// removes files whose process is gone, stale-temp.ts). Only for work that turns the event
// loop often (reading a stream, a peer's messages): a listener defers the signal to the
// next turn, so work that runs synchronously for long (a local export) would become
// unstoppable until it ends; such work keeps Node's default, and its leftovers go at its
// next run. A command that handles the stop signals itself (dump, mirror, protect:
// commands/_cli/stop-signals.ts) cleans up its own way: these files are then left to it.
import fs from 'node:fs';
import { EXIT_CODES } from '../core/errors.js';

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGHUP', 'SIGTERM'];
const files = new Set<string>();
let installed = false;
/** Commands handling the stop signals themselves right now (onStopSignals). */
let handledElsewhere = 0;

/** A command takes the stop signals itself until the returned function is called: these files are then its business. */
export function stopSignalsHandledByCaller(): () => void {
  handledElsewhere++;
  let done = false;
  return () => {
    if (!done) handledElsewhere--;
    done = true;
  };
}

/** What the stop line says besides (a restore onto an existing volume: that it is as its last CP left it). */
const notes = new Set<string>();

/** Removes `file` if the process is stopped by a signal before the returned function is called. */
export function removeOnStop(file: string): () => void {
  return registered(files, file);
}

/** Says `note` in the stop line if the process is stopped by a signal before the returned function is called (it ends at once, as without this). */
export function sayOnStop(note: string): () => void {
  return registered(notes, note);
}

/** Adds `item` to `set` while the signals are taken; the function returned takes it out again. */
function registered(set: Set<string>, item: string): () => void {
  set.add(item);
  install();
  return () => {
    set.delete(item);
    uninstallWhenIdle();
  };
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
}

/** Nothing left to remove or say: signals get their default handling (or the command's) again. */
function uninstallWhenIdle(): void {
  if (files.size === 0 && notes.size === 0 && installed) {
    installed = false;
    for (const s of SIGNALS) process.off(s, onSignal);
  }
}

function onSignal(sig: NodeJS.Signals): void {
  // the command stops on its own terms (other listeners, such as a library restoring the
  // terminal, do not count: they would not end the process while this one listens)
  if (handledElsewhere > 0) return;
  const removed = files.size > 0;
  for (const f of files) fs.rmSync(f, { force: true, recursive: true });
  files.clear();
  const said = [...(removed ? ['the unfinished output was removed, nothing else changed'] : []), ...notes];
  process.stderr.write(`imgstream: stopped by ${sig}${said.length ? `: ${said.join('; ')}` : ''}\n`);
  process.exit(sig === 'SIGINT' ? EXIT_CODES.interrupted.exit : sig === 'SIGHUP' ? EXIT_CODES.hangup.exit : EXIT_CODES.terminated.exit);
}
