// What the summary reporter (main vitest process) and external-tools.ts (test workers)
// share, without importing vitest: the package of each tool and where misses are recorded.
/** Debian/Ubuntu package of each tool tests may need. */
export const TOOL_PACKAGES: Record<string, string> = {
  'qemu-img': 'qemu-utils',
  'qemu-io': 'qemu-utils',
  'qemu-nbd': 'qemu-utils',
  nbdcopy: 'libnbd-bin',
  nbdinfo: 'libnbd-bin',
  nbdsh: 'libnbd-bin',
  nbdkit: 'nbdkit',
  openssl: 'openssl',
  groff: 'groff',
  zstd: 'zstd',
  xz: 'xz-utils',
  bzip2: 'bzip2',
  gzip: 'gzip',
  tar: 'tar',
  bsdtar: 'libarchive-tools',
};

/** The environment variable through which the reporter and the test workers meet. */
export const MISSING_TOOLS_ENV = 'IMGSTREAM_TEST_MISSING_TOOLS';
export const MISSING_TOOLS_FILE = 'missing.jsonl';

export interface MissingToolRecord {
  tool: string;
  /** The test file that skips tests for want of it. */
  file: string;
}

