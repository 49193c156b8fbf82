// The passphrase prompt, through the built CLI on a pseudo-terminal (test/support/on-terminal.py,
// python3's pty): dump --encrypt without a key flag asks twice without echo and the
// stream restores and verifies with the passphrase typed once (once for a whole chain);
// a second answer that differs, a passphrase too short, Ctrl-D and Ctrl-C each stop the
// dump before it takes a snapshot; a stream encrypted with a key file is refused without
// asking; a wrong passphrase is the "auth" error. Without a terminal nothing is asked
// (encrypted-cli.test.ts checks the one-line errors).
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI_BIN, REPO_ROOT } from '../support/cli.js';
import { mutate, randomImage, tempDir } from '../support/images.js';
import { setupOk } from '../support/in-process.js';
import { exportShas, ok, snapshotNames } from '../support/stream-cli.js';

const BS = 4096;
const BLOCKS = 256; // 1 MiB
const root = tempDir('imgstream-crypt-prompt-');
const env = { IMGSTREAM_LOCK_DIR: path.join(root, 'locks'), IMGSTREAM_CATALOG: path.join(root, 'catalog.json') };
const o = { env, timeoutMs: 60_000 };
const src = path.join(root, 'src.vol');
const l0 = path.join(root, 'src.l0');
const l1 = path.join(root, 'src.l1');
const PASS = 'correct horse battery';
let srcShas: Record<string, string>;

interface OnTerminal {
  output: string;
  exit: number;
  answered: number;
}

/** `imgstream ...args` on a pseudo-terminal, typing `answers` at its questions. */
function onTerminal(args: string[], answers: string[]): OnTerminal {
  const spec = { argv: [process.execPath, CLI_BIN, ...args], answers, timeout: 50 };
  const childEnv: NodeJS.ProcessEnv = { ...process.env, ...env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true', TERM: 'dumb' };
  for (const k of ['NODE_ENV', 'NODE_OPTIONS', 'IMGSTREAM_DEBUG', 'FORCE_COLOR']) delete childEnv[k];
  const r = spawnSync('python3', [path.join(REPO_ROOT, 'test', 'support', 'on-terminal.py'), JSON.stringify(spec)], { env: childEnv, encoding: 'utf8', timeout: 60_000 });
  expect(r.status, r.stderr).toBe(0);
  return JSON.parse(r.stdout) as OnTerminal;
}

const questions = (t: OnTerminal, q: RegExp) => t.output.split(/\r?\n/).filter((l) => q.test(l)).length;

afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

beforeAll(async () => {
  await setupOk(['volume', 'create', src, '--size', `${(BLOCKS * BS) / 1024}K`, '--max-snapshots', '16'], { env });
  const img = randomImage(BLOCKS, BS, 1801);
  const raw = path.join(root, 'img.raw');
  fs.writeFileSync(raw, img);
  await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
  await setupOk(['snapshot', 'create', src, 's1', '-q'], { env });
  mutate(img, BS, 30, 1802);
  fs.writeFileSync(raw, img);
  await setupOk(['volume', 'import', src, '--from', raw, '-q'], { env });
  await setupOk(['snapshot', 'create', src, 's2', '-q'], { env });
  srcShas = await exportShas(src, ['s1', 's2'], o);
}, 60_000);

describe('passphrase typed at a prompt on a terminal', { timeout: 60_000 }, () => {
  it('dump --encrypt asks twice without echo; restore and verify ask once for a chain', async () => {
    const d0 = onTerminal(['dump', src, '-l', '0', '-s', 's1', '--to', l0, '--encrypt'], [`${PASS}\r`, `${PASS}\r`]);
    expect(d0.exit, d0.output).toBe(0);
    expect(questions(d0, /passphrase to encrypt with:/)).toBe(1);
    expect(questions(d0, /the same passphrase again:/)).toBe(1);
    expect(d0.output).not.toContain('correct horse');
    const d1 = onTerminal(['dump', src, '-l', '1', '-s', 's2', '--to', l1, '--encrypt'], [`${PASS}\r`, `${PASS}\r`]);
    expect(d1.exit, d1.output).toBe(0);
    // the stream is sealed with that passphrase: a passphrase file holding it opens it
    const pf = path.join(root, 'pass.txt');
    fs.writeFileSync(pf, `${PASS}\n`, { mode: 0o600 });
    ok(['verify', l0, l1, '--passphrase-file', pf], o);

    const to = path.join(root, 'restored.vol');
    const r = onTerminal(['restore', '--from', l0, '--from', l1, '--to', to], [`${PASS}\r`]);
    expect(r.exit, r.output).toBe(0);
    expect(questions(r, /passphrase of .*src\.l0: /)).toBe(1);
    expect(r.answered).toBe(1);
    expect(r.output).not.toContain('correct horse');
    expect(await exportShas(to, ['s1', 's2'], o)).toEqual(srcShas);

    const v = onTerminal(['verify', l0, l1], [`${PASS}\r`]);
    expect(v.exit, v.output).toBe(0);
    expect(v.output).toMatch(/2 stream\(s\) verified/);

    // backspace and Ctrl-U edit what is typed
    const e = onTerminal(['verify', l0], [`wrong\u0015${PASS}xy\u007f\u007f\r`]);
    expect(e.exit, e.output).toBe(0);
  });

  it('a wrong passphrase is the "auth" error, and nothing is restored', () => {
    const to = path.join(root, 'never.vol');
    const r = onTerminal(['restore', '--from', l0, '--to', to], ['not the passphrase\r']);
    expect(r.exit, r.output).toBe(11);
    expect(r.output).toMatch(/imgstream: .*src\.l0: wrong key/);
    expect(fs.existsSync(to)).toBe(false);
  });

  it('a stream encrypted with a key file is refused without asking', () => {
    const key = path.join(root, 'k.key');
    fs.writeFileSync(key, randomBytes(32), { mode: 0o600 });
    const kl0 = path.join(root, 'key.l0');
    ok(['dump', src, '-l', '0', '-s', 's1', '--to', kl0, '--catalog', path.join(root, 'k.json'), '--encrypt', '--key-file', key], o);
    const v = onTerminal(['verify', kl0], [`${PASS}\r`]);
    expect(v.exit, v.output).toBe(11);
    expect(v.answered).toBe(0);
    expect(v.output).toMatch(/imgstream: .*key\.l0: the stream was encrypted with a key file \(give --key-file/);
  });

  it('different answers, a short passphrase, Ctrl-D or Ctrl-C: no dump, no snapshot taken', async () => {
    const snaps = await snapshotNames(src, o);
    const to = path.join(root, 'never.l0');
    const args = ['dump', src, '-l', '0', '--to', to, '--encrypt'];
    const differ = onTerminal(args, [`${PASS}\r`, `${PASS}!\r`]);
    expect(differ.exit, differ.output).toBe(4);
    expect(differ.output).toMatch(/imgstream: the two passphrases typed differ/);
    const short = onTerminal(args, ['short\r']);
    expect(short.exit, short.output).toBe(4);
    expect(short.output).toMatch(/imgstream: the passphrase typed is shorter than 8 characters/);
    const eof = onTerminal(args, ['\u0004']);
    expect(eof.exit, eof.output).toBe(4);
    expect(eof.output).toMatch(/imgstream: no passphrase typed/);
    const interrupted = onTerminal(args, [`${PASS.slice(0, 5)}\u0003`]);
    expect(interrupted.exit, interrupted.output).toBe(-2); // SIGINT
    expect(await snapshotNames(src, o)).toEqual(snaps);
    expect(fs.existsSync(to)).toBe(false);
  });
});
