/** Shared by the backup e2e tests: the server fixture process and running `stowage-client`. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const repoRoot = fileURLToPath(new URL('../..', import.meta.url));
export const ROOT_PASSWORD = 'root-secret-1';

export interface E2eServer {
  root: string;
  host: string;
  port: number;
  fingerprint: string;
  storePath: string;
  proc: ChildProcess;
  /** Environment for `stowage-client` against this server (HOME in the temp dir). */
  env: NodeJS.ProcessEnv;
  stop(): Promise<void>;
}

export async function startE2eServer(prefix: string): Promise<E2eServer> {
  const root = mkdtempSync(join(tmpdir(), prefix));
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'test/e2e/fixtures/backup-server.ts'), root],
    {
      cwd: repoRoot,
      env: { ...process.env, ROOT_PASSWORD },
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: proc.stdout! });
    rl.once('line', resolve);
    proc.once('exit', (code) => reject(new Error(`server fixture exited with ${code}`)));
  });
  const info = JSON.parse(line) as { host: string; port: number; fingerprint: string };
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    HOME: join(root, 'home'),
    STOWAGE_REPOSITORY: `root@pam@${info.host}:${info.port}:local`,
    STOWAGE_PASSWORD: ROOT_PASSWORD,
    STOWAGE_FINGERPRINT: info.fingerprint,
  };
  return {
    root,
    ...info,
    storePath: join(root, 'stores', 'local'),
    proc,
    env,
    async stop() {
      proc.kill('SIGKILL');
      await new Promise((r) => (proc.exitCode !== null ? r(null) : proc.once('exit', r)));
      rmSync(root, { recursive: true, force: true });
    },
  };
}

export interface ClientResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Start `stowage-client ARGS` (from the sources, via tsx). */
export function spawnClient(args: string[], env: NodeJS.ProcessEnv): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/stowage-client.ts'), ...args], {
    cwd: repoRoot,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Run `stowage-client ARGS` to completion. */
export function runClient(args: string[], env: NodeJS.ProcessEnv): Promise<ClientResult> {
  const proc = spawnClient(args, env);
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) =>
    proc.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr })),
  );
}
