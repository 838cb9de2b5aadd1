/**
 * Running Stowage from a benchmark as a user runs it: the sources transpiled to JavaScript (or
 * through tsx), the e2e fixture server (test/e2e/fixtures/backup-server.ts) as its own process,
 * optionally under `node --cpu-prof`.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const repoRoot = fileURLToPath(new URL('../..', import.meta.url));

/** How to run a TypeScript entry point of the repository: transpiled, or through tsx. */
export type Runner = (tsPath: string) => string[];

/**
 * Transpile src/ and the server fixture into `out` (one .js per .ts, imports unchanged, as tsc
 * emits them), with the repository's node_modules and an ESM package.json beside them. `root` is
 * another checkout to build instead of this one (a baseline measured in the same run).
 */
export function transpile(out: string, root = repoRoot): Runner {
  const esbuild = join(repoRoot, 'node_modules/.bin/esbuild');
  const entries = spawnSync('find', ['src', 'test/e2e/fixtures', 'test/faults/fixtures', '-name', '*.ts'], {
    cwd: root,
    encoding: 'utf8',
  })
    .stdout.split('\n')
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
  const r = spawnSync(
    esbuild,
    [...entries, `--outdir=${out}`, '--outbase=.', '--format=esm', '--platform=node', '--log-level=warning'],
    { cwd: root, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`esbuild failed: ${r.stderr}`);
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
  symlinkSync(join(repoRoot, 'node_modules'), join(out, 'node_modules'));
  return (tsPath) => [join(out, tsPath.replace(/\.ts$/, '.js'))];
}

export const fromSources: Runner = (tsPath) => ['--import', 'tsx', join(repoRoot, tsPath)];

/**
 * The environment an installed `stowage` / `stowage-client` starts with: the assignments in the
 * entry point's `#!/usr/bin/env -S NAME=value node` line (glibc's huge-page tunable, see
 * docs/performance.md). The benchmarks start node themselves, so they apply it themselves, from
 * the checkout they run (`sources`: this tree, or a baseline's).
 */
export function launcherEnv(tsEntry: string, sources = repoRoot): Record<string, string> {
  const first = readFileSync(join(sources, tsEntry), 'utf8').split('\n', 1)[0] ?? '';
  const env: Record<string, string> = {};
  if (!first.startsWith('#!')) return env;
  for (const m of first.matchAll(/\s([A-Z_][A-Z0-9_]*)=(\S+)/g)) env[m[1]!] = m[2]!;
  return env;
}

/** `node --cpu-prof` flags writing every thread's profile into `dir`; none for an empty `dir`. */
export function profileFlags(dir: string): string[] {
  if (!dir) return [];
  mkdirSync(dir, { recursive: true });
  return ['--cpu-prof', '--cpu-prof-dir', dir];
}

export interface BenchServer {
  host: string;
  port: number;
  fingerprint: string;
  pid: number;
  stop(): Promise<void>;
}

/** Start the fixture server on instance directory `root` (datastore `local`), `root@pam` with `password`. */
export async function startServer(
  root: string,
  run: Runner,
  opts: { password: string; profile?: string; sources?: string },
): Promise<BenchServer> {
  const proc = spawn(
    process.execPath,
    [...profileFlags(opts.profile ?? ''), ...run('test/e2e/fixtures/backup-server.ts'), root],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        ...launcherEnv('src/cli/stowage.ts', opts.sources),
        ROOT_PASSWORD: opts.password,
      },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    proc.once('exit', (c) => reject(new Error(`server exited with ${c}`)));
  });
  return {
    ...(JSON.parse(line) as { host: string; port: number; fingerprint: string }),
    pid: proc.pid!,
    // a profiled server must exit by itself to write its profile
    stop: async () => {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill(opts.profile ? 'SIGINT' : 'SIGKILL');
      await exited;
    },
  };
}
