// The mirror state file (--state, $IMGSTREAM_MIRROR_STATE) as users get it wrong: a
// catalog or a disk image given by mistake, a damaged state, a directory. Each is refused
// in one line before anything happens (the file unchanged, no replica or mirror made, no
// temporary left); it was read as an empty state and then replaced by one, or failed
// after the transfer with an internal error. A missing or empty file is a new state.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliJson, runCli, sha256File, type CliResult } from '../support/cli.js';
import { tempDir } from '../support/images.js';
import { dirEntries, expectOneLineError } from '../support/stream-cli.js';
import { inProcess, inProcessJson, setupOk, volumeWithSnapshot } from '../support/in-process.js';

const root = tempDir('imgstream-mirror-state-');
const at = (n: string) => path.join(root, n);
const env = { IMGSTREAM_LOCK_DIR: at('locks'), IMGSTREAM_MIRROR_STATE: at('default-state.json') };
const o = { env, timeoutMs: 60_000 };
const src = at('src.vol');

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/**
 * `imgstream ...args` as a process; with `again` (a refusal each command already gave as a
 * process for another file of the kind), here instead when in-process.ts runs the command.
 */
function refusal(args: string[], again: boolean): Promise<CliResult> | CliResult {
  const here = again && ['mirror status', 'snapshot delete'].includes(args.slice(0, 2).join(' '));
  return here ? inProcess(args, { env }) : runCli(args, o);
}

beforeAll(async () => {
  await volumeWithSnapshot(src, at('src.raw'), env);
  await setupOk(['snapshot', 'create', src, 'm1', '--master'], { env });
  fs.writeFileSync(at('catalog.json'), JSON.stringify({ format: 'imgstream-catalog', version: 1, dumps: [] }));
  fs.writeFileSync(at('damaged.json'), '{"relationships": [');
  // well-formed JSON, damaged entries (edited by hand): status failed with an internal error, an update kept the damage
  fs.writeFileSync(at('entry5.json'), '{"format":"imgstream-mirror-state","version":1,"relationships":[5]}');
  fs.writeFileSync(at('entrynull.json'), '{"format":"imgstream-mirror-state","version":1,"relationships":[null]}');
  fs.writeFileSync(at('entryvol.json'), '{"format":"imgstream-mirror-state","version":1,"relationships":[{"key":"x","volume":null}]}');
  fs.mkdirSync(at('adir'));
});

describe('a --state that is not a mirror state', () => {
  it('is refused before anything happens, and left as it was', async () => {
    // the last column: the same refusal as for catalog.json (not a mirror state, exit 9) again
    const cases: Array<[string, number, RegExp, boolean]> = [
      ['catalog.json', 9, /catalog\.json: not an imgstream mirror state file; give --state another file, or move this one away/, false],
      ['src.raw', 9, /src\.raw: not an imgstream mirror state file/, true],
      ['damaged.json', 9, /damaged\.json: not an imgstream mirror state file/, true],
      ['adir', 4, /adir: is a directory, not a mirror state file/, false],
      ['entry5.json', 9, /entry5\.json: a damaged mirror state file: relationship 1 of 1: is not an object; nothing was changed; move it away/, false],
      ['entrynull.json', 9, /entrynull\.json: a damaged mirror state file: relationship 1 of 1: is not an object/, true],
      ['entryvol.json', 9, /entryvol\.json: a damaged mirror state file: relationship 1 of 1: volume is not a uuid and a path/, true],
    ];
    for (const [name, exit, pattern, again] of cases) {
      const before = dirEntries(root);
      const sha = fs.statSync(at(name)).isFile() ? sha256File(at(name)) : null;
      for (const args of [
        ['replicate', 'pull', at('rep.vol'), '--from', src],
        ['mirror', 'update', src, '--to', at('mirror.vol')],
        ['mirror', 'status', src],
        ['snapshot', 'delete', src, 'm1'],
      ]) {
        expectOneLineError(await refusal([...args, '--state', at(name)], again), `${args.slice(0, 2).join(' ')} --state ${name}`, exit, pattern);
        if (sha !== null) expect(sha256File(at(name)), `${name} unchanged`).toBe(sha);
        expect(dirEntries(root), `${args.slice(0, 2).join(' ')} --state ${name}: nothing made`).toEqual(before);
      }
    }
    expect((await inProcessJson<{ snapshots: Array<{ name: string }> }>(['snapshot', 'list', src], { env })).snapshots.map((s) => s.name)).toEqual(['s1', 'm1']);
  });

  it('an empty file (touch, mktemp) is a new state, and what it then holds is read back', () => {
    fs.writeFileSync(at('empty.json'), '');
    const r = cliJson<{ top: string }>(['replicate', 'pull', at('rep.vol'), '--from', src, '--state', at('empty.json')], o);
    expect(r.top).toBe('m1');
    // the state now knows the replica: its master is kept
    expectOneLineError(runCli(['snapshot', 'delete', src, 'm1', '--state', at('empty.json')], o), 'delete a master the replica holds', 7, /rep\.vol, whose next pull starts from it/);
  });
});
