// Operating-system errors become one line naming the path and what was being done, with
// the exit code of their kind; a read-only file system (a helper found it reported as
// Node's raw text, naming an internal temporary file) and a quota are among them.
import { describe, expect, it } from 'vitest';
import { fromSystemError } from '../../src/core/errors.js';

const errno = (code: string, message: string) => Object.assign(new Error(message), { code });

describe('fromSystemError', () => {
  it.each([
    ['EROFS', "EROFS: read-only file system, open '/mnt/ro/.x.vol.imgstream-new-1'", '/mnt/ro/x.vol: read-only file system while creating the volume', 10, /writable file system/],
    ['EDQUOT', 'EDQUOT: disk quota exceeded, write', '/mnt/ro/x.vol: disk quota exceeded while creating the volume', 10, undefined],
    ['ENOSPC', 'ENOSPC: no space left on device, write', '/mnt/ro/x.vol: no space left on the device while creating the volume', 10, undefined],
    ['EACCES', 'EACCES: permission denied', '/mnt/ro/x.vol: permission denied while creating the volume', 10, undefined],
  ])('%s: one line naming the path, never the raw text', (code, raw, message, exit, hint) => {
    const e = fromSystemError(errno(code, raw), '/mnt/ro/x.vol', 'creating the volume');
    expect(e.message).toBe(message);
    expect(e.exitCode).toBe(exit);
    if (hint) expect(e.hint).toMatch(hint);
    expect(e.message).not.toContain('imgstream-new');
  });
});
