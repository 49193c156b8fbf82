// The AWS SDK is loaded only when an s3:// medium is used: importing it at the top cost
// every dump, restore and verify about a third of a second of startup. A command module
// loaded in a fresh process must leave no @aws-sdk module in the CommonJS cache, and a
// source for s3:// must load it.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';

function loadedAfter(script: string): string[] {
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `import { createRequire } from 'node:module';\n${script}\nprocess.stdout.write(JSON.stringify(Object.keys(createRequire(import.meta.url).cache)));`], { cwd: REPO_ROOT, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as string[]).filter((m) => m.includes(`${path.sep}@aws-sdk${path.sep}`));
}

describe('the S3 client', () => {
  it('is not loaded by dump, restore, verify or the media module', () => {
    const modules = ['commands/dump.js', 'commands/restore.js', 'commands/verify.js', 'src/media/index.js'].map((m) => `await import(${JSON.stringify(path.join(REPO_ROOT, 'dist', m))});`);
    expect(loadedAfter(modules.join('\n'))).toEqual([]);
  });

  it('is loaded once an s3:// source is made', () => {
    const media = JSON.stringify(path.join(REPO_ROOT, 'dist', 'src', 'media', 'index.js'));
    const loaded = loadedAfter(`const m = await import(${media});\nm.s3Source('s3://bucket/prefix/name', { endpoint: 'http://127.0.0.1:1' });`);
    expect(loaded.some((m) => m.includes('client-s3'))).toBe(true);
  });
});
