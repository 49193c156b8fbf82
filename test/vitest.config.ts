// npm test's vitest configuration (`--config test/vitest.config.ts`): the repository is
// the root, and every test file runs after test-state.ts (each test process keeps the
// catalog and mirror state in a directory of its own).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

// Every node process started with NODE_EXTRA_CA_CERTS set parses that CA bundle at start:
// about 40 ms of CPU on this project's machines (which set it machine-wide), paid by each
// of the thousands of imgstream processes the tests run, for nothing: no test reaches a
// TLS server with a public certificate (peer TLS tests name their CA or fingerprint, the
// S3 gateway is plain HTTP). The workers, and every process they start, go without it.
delete process.env.NODE_EXTRA_CA_CERTS;

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: { setupFiles: ['./test/support/test-state.ts'] },
});
