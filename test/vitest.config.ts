// npm test's vitest configuration (`--config test/vitest.config.ts`): the repository is
// the root, and every test file runs after test-state.ts (each test process keeps the
// catalog and mirror state in a directory of its own).
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

export default defineConfig({
  root: fileURLToPath(new URL('..', import.meta.url)),
  test: { setupFiles: ['./test/support/test-state.ts'] },
});
