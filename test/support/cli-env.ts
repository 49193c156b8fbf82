// The test's environment for the CLI (the `env` given to runCli), applied to this process
// for calls made here instead of in a CLI process (oracle.ts, in-process.ts): the variables
// are process-wide, so such calls run one at a time and leave the environment as it was.

let queue: Promise<unknown> = Promise.resolve();

/** Sets `env`'s variables (undefined: unset) in this process; returns what puts them back. */
export function applyEnv(env: Record<string, string | undefined>): () => void {
  const saved = Object.keys(env).map((k) => [k, process.env[k]] as const);
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  return () => {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
}

/** Runs fn with `env` applied in this process, after every call started before it has ended. */
export function withCliEnv<T>(env: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const run = async (): Promise<T> => {
    const restore = applyEnv(env);
    try {
      return await fn();
    } finally {
      restore();
    }
  };
  const p = queue.then(run, run);
  queue = p.catch(() => {});
  return p;
}
