/** Shared by the backup e2e tests: the server fixture process and running `stowage-client`. */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { BackupWriter } from '../../src/client/backup-writer.js';
import { ChunkPool } from '../../src/client/chunk-pool.js';
import { ApiClient } from '../../src/client/connection.js';

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
  /** What the server wrote to stderr so far (its log at `warn` and up, with `serverLog`). */
  readonly stderr: string;
  /** SIGKILL the server and remove its directory. */
  stop(): Promise<void>;
  /** SIGKILL the server, keeping its directory (restart it with `startE2eServer(…, {root, port})`). */
  kill(): Promise<void>;
}

export interface E2eServerOptions {
  /** An existing server directory (a restart): its datastore and config are kept. */
  root?: string;
  /** Listen on this port (a restart keeps the clients' repository valid); default any free one. */
  port?: number;
  /** Log as the real server does (pino, level `warn`) to stderr, kept in `stderr`. */
  serverLog?: boolean;
  /** More environment for the fixture (e.g. its fault injection, NO_SPACE_AFTER). */
  env?: NodeJS.ProcessEnv;
}

export async function startE2eServer(prefix: string, opts: E2eServerOptions = {}): Promise<E2eServer> {
  const root = opts.root ?? mkdtempSync(join(tmpdir(), prefix));
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', join(repoRoot, 'test/e2e/fixtures/backup-server.ts'), root],
    {
      cwd: repoRoot,
      env: {
        ...process.env,
        ROOT_PASSWORD,
        ...(opts.port !== undefined && { PORT: String(opts.port) }),
        ...(opts.serverLog && { SERVER_LOG: '1' }),
        ...opts.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    if (!opts.serverLog) process.stderr.write(d);
  });
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
  const kill = async () => {
    proc.kill('SIGKILL');
    await new Promise((r) =>
      proc.exitCode !== null || proc.signalCode !== null ? r(null) : proc.once('exit', r),
    );
  };
  return {
    root,
    ...info,
    storePath: join(root, 'stores', 'local'),
    proc,
    env,
    get stderr() {
      return stderr;
    },
    kill,
    async stop() {
      await kill();
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

/** `stowage-client backup root.tar:DIR` as `host/ID` at `time`, with the JSON summary on stdout. */
export function runTreeBackup(
  env: NodeJS.ProcessEnv,
  dir: string,
  id: string,
  time: number,
  extra: string[] = [],
): Promise<ClientResult> {
  const args = ['backup', `root.tar:${dir}`, '--backup-id', id, '--backup-time', String(time)];
  return runClient([...args, '--output-format', 'json', ...extra], env);
}

/** An API client logged in to `s` as `username` (root@pam by default), its certificate pinned. */
export async function loginApi(
  s: Pick<E2eServer, 'host' | 'port' | 'fingerprint'>,
  password = ROOT_PASSWORD,
  username = 'root@pam',
): Promise<ApiClient> {
  const target = { host: s.host, port: s.port };
  const t = await new ApiClient(target, { fingerprint: s.fingerprint }).call<{
    ticket: string;
    CSRFPreventionToken: string;
  }>('POST', '/access/ticket', { username, password });
  return new ApiClient(
    target,
    { fingerprint: s.fingerprint },
    { kind: 'ticket', ticket: t.ticket, csrf: t.CSRFPreventionToken },
  );
}

/**
 * Upload `archives` (server name → archive bytes) as the snapshot `host/ID` at `time` of
 * datastore `store` through the backup protocol, as a PBS client that writes no catalog does.
 */
export async function uploadSnapshot(
  s: Pick<E2eServer, 'host' | 'port' | 'fingerprint'>,
  snapshot: { store: string; id: string; time: number; password?: string },
  archives: Record<string, Buffer>,
): Promise<void> {
  const api = await loginApi(s, snapshot.password);
  const pool = new ChunkPool();
  let writer: BackupWriter | undefined;
  try {
    writer = await BackupWriter.start(
      {
        target: { host: s.host, port: s.port },
        policy: { fingerprint: s.fingerprint },
        credentials: api.credentials,
        store: snapshot.store,
        backupType: 'host',
        backupId: snapshot.id,
        backupTime: snapshot.time,
      },
      pool,
    );
    for (const [name, bytes] of Object.entries(archives))
      await writer.uploadStream(name, Readable.from([bytes]), { chunkSize: 64 * 1024 });
    await writer.finish();
  } catch (err) {
    // a refused upload must not leave its session open (it would keep the test process alive)
    writer?.abort();
    throw err;
  } finally {
    await pool.close();
  }
}

const taskPath = (upid: string) => `/nodes/${upid.split(':')[1]!}/tasks/${encodeURIComponent(upid)}`;

/** Wait for the task `upid` to end (at most `timeoutMs`); its exit status and log lines. */
export async function taskEnd(
  api: ApiClient,
  upid: string,
  timeoutMs = 120_000,
): Promise<{ status: string; log: string[] }> {
  for (const end = Date.now() + timeoutMs; Date.now() < end;) {
    const s = await api.call<{ status: string; exitstatus?: string }>('GET', `${taskPath(upid)}/status`);
    if (s.status !== 'running') {
      const log = await api.call<Array<{ t: string }>>('GET', `${taskPath(upid)}/log`, { limit: 10000 });
      return { status: s.exitstatus ?? '', log: log.map((l) => l.t) };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  // what it was doing when the wait gave up: the line it is stuck after
  const log = await api
    .call<Array<{ t: string }>>('GET', `${taskPath(upid)}/log`, { limit: 10000 })
    .then((l) => l.map((x) => x.t).join('\n'))
    .catch((err: unknown) => `(log not readable: ${(err as Error).message})`);
  throw new Error(`task ${upid} did not end in ${timeoutMs} ms; its log so far:\n${log}`);
}
