// Where a worker thread's script is: next to the module that starts it when running the
// build, or in dist/ when the caller runs from TypeScript sources (the test runner).
// null when it is not built: callers then do the work on their own thread.
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';

export function workerScript(url: URL): string | null {
  const here = fileURLToPath(url);
  if (fs.existsSync(here)) return here;
  const at = here.lastIndexOf('/src/');
  if (at < 0) return null;
  const built = `${here.slice(0, at)}/dist${here.slice(at)}`;
  return fs.existsSync(built) ? built : null;
}
