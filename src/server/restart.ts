/**
 * Graceful restart (PBS reloads its daemons the same way, handing the listening socket to a
 * re-executed process; docs/adr/003-graceful-restart.md): on SIGHUP the running server starts a
 * new server process that inherits the *listening socket itself* as a file descriptor, waits
 * until the new process serves, then stops accepting, finishes its running tasks and open
 * requests, and exits.
 *
 * - No connection is refused during the handover: both processes hold the same socket, so the
 *   kernel's accept queue is never closed; whichever process accepts serves.
 * - Operations the old process admitted stay registered under its pid until its tasks release
 *   them, so the shared operation registry stays exact across both processes (design invariant 2),
 *   and a mode change waits for them as for any other.
 * - The new process finds the certificate, keys and root@pam already there, so it neither
 *   regenerates them nor prints a password.
 *
 * The server entry point cooperates in two places: it listens on `inheritedListenFd()` when set
 * (instead of binding host:port, which the old process still holds), and calls
 * `installGracefulRestart` once it serves, which also tells a waiting old process that it may go.
 */
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import type { RunningServer } from './server.js';
import { ERR_NO_LISTEN_SOCKET, ERR_RESTART_CHILD_EXITED, ERR_RESTART_TIMEOUT } from '../errors.js';

/** Environment variable telling a new server process which fd is its inherited listening socket. */
export const LISTEN_FD_ENV = 'STOWAGE_LISTEN_FD';
/** Set in the new process to the old one's pid; its presence means "report ready over IPC". */
export const RESTARTED_FROM_ENV = 'STOWAGE_RESTARTED_FROM';

/** The child's fd for the socket: right after stdin, stdout, stderr. */
const CHILD_LISTEN_FD = 3;
const READY_MESSAGE = 'stowage-server-ready';

/** The inherited listening socket's fd, when this process was started by a graceful restart. */
export function inheritedListenFd(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[LISTEN_FD_ENV];
  if (raw === undefined || !/^\d+$/.test(raw)) return undefined;
  return Number(raw);
}

/** Inodes of TCP sockets listening on `port` (IPv4 and IPv6), from /proc/net. */
function listeningInodes(port: number, pid: number | 'self'): Set<string> {
  const inodes = new Set<string>();
  for (const file of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${file}`, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // local_address is ADDR:PORT in hex, st 0A is LISTEN, inode is column 10
      if (cols.length < 10 || cols[3] !== '0A') continue;
      if (parseInt(cols[1]!.split(':')[1]!, 16) === port) inodes.add(cols[9]!);
    }
  }
  return inodes;
}

/**
 * The fd under which process `pid` holds the socket listening on `port`, or undefined. Found
 * through /proc (Linux), so it needs nothing from the HTTP server object.
 */
export function findListeningFd(port: number, pid: number | 'self' = 'self'): number | undefined {
  const inodes = listeningInodes(port, pid);
  if (inodes.size === 0) return undefined;
  for (const name of readdirSync(`/proc/${pid}/fd`)) {
    let target: string;
    try {
      target = readlinkSync(`/proc/${pid}/fd/${name}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m && inodes.has(m[1]!)) return Number(name);
  }
  return undefined;
}

export interface RestartOptions {
  /** Arguments of the new process after the node binary; default this process's (execArgv + argv). */
  args?: string[];
  /** How long the new process may take to serve; default 60 s. */
  readyTimeoutMs?: number;
}

/**
 * Start the new server process on this server's listening socket and wait until it serves.
 * Returns its pid. On failure (it exits, or is not ready in time) it is killed and this process
 * keeps serving; the error says why.
 */
export async function spawnReplacement(server: RunningServer, opts: RestartOptions = {}): Promise<number> {
  const port = Number(new URL(server.url).port);
  const fd = findListeningFd(port);
  if (fd === undefined) throw ERR_NO_LISTEN_SOCKET(port);
  const args = opts.args ?? [...process.execArgv, ...process.argv.slice(1)];
  const child = spawn(process.execPath, args, {
    stdio: ['ignore', 'inherit', 'inherit', fd, 'ipc'],
    env: {
      ...process.env,
      [LISTEN_FD_ENV]: String(CHILD_LISTEN_FD),
      [RESTARTED_FROM_ENV]: String(process.pid),
    },
    // its own session: the new server must outlive this one and not share its signals
    detached: true,
  });
  const timeoutMs = opts.readyTimeoutMs ?? 60_000;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(ERR_RESTART_TIMEOUT(timeoutMs / 1000)), timeoutMs);
      const done = (err?: Error) => {
        clearTimeout(timer);
        child.off('message', onMessage);
        child.off('exit', onExit);
        child.off('error', done);
        if (err) reject(err);
        else resolve();
      };
      const onMessage = (msg: unknown) => {
        if ((msg as { type?: unknown })?.type === READY_MESSAGE) done();
      };
      const onExit = (code: number | null, signal: string | null) =>
        done(ERR_RESTART_CHILD_EXITED(signal ?? `code ${code}`));
      child.on('message', onMessage);
      child.on('exit', onExit);
      child.on('error', done);
    });
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  if (child.connected) child.disconnect();
  child.unref();
  return child.pid!;
}

/**
 * In a process started by a graceful restart, tell the old process that this one serves. Call it
 * after the server listens; a no-op otherwise.
 */
export function notifyRestartReady(): void {
  if (process.env[RESTARTED_FROM_ENV] === undefined || !process.send) return;
  process.send({ type: READY_MESSAGE, pid: process.pid });
  process.disconnect();
  // a later restart of this process passes its own values
  delete process.env[RESTARTED_FROM_ENV];
  delete process.env[LISTEN_FD_ENV];
}

export interface GracefulRestartOptions extends RestartOptions {
  /** Stopped before the old server closes (the scheduler: the new process runs the jobs now). */
  stop?: ReadonlyArray<{ stop(): unknown }>;
  /** Progress lines; default stdout. */
  announce?: (line: string) => void;
  /** Called when the old process is done; default `process.exit`. */
  exit?: (code: number) => void;
}

export interface GracefulRestart {
  /** Hand over to a new process and finish this one (what SIGHUP does). */
  restart(): Promise<void>;
  /** Remove the SIGHUP handler. */
  uninstall(): void;
}

/**
 * Make SIGHUP restart the server gracefully, and report readiness to an old process waiting for
 * this one. Call once the server listens.
 */
export function installGracefulRestart(
  server: RunningServer,
  opts: GracefulRestartOptions = {},
): GracefulRestart {
  const announce = opts.announce ?? ((line: string) => process.stdout.write(line + '\n'));
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  let inProgress: Promise<void> | undefined;

  const restart = (): Promise<void> => {
    inProgress ??= (async () => {
      let pid: number;
      try {
        pid = await spawnReplacement(server, opts);
      } catch (err) {
        announce(`graceful restart failed, this server keeps running: ${(err as Error).message}`);
        inProgress = undefined;
        return;
      }
      const running = server.context.tasks.activeCount;
      announce(
        `restart: new server process ${pid} took over ${server.url}; ` +
          `process ${process.pid} finishes ${running} running task(s) and exits`,
      );
      process.off('SIGHUP', onHup);
      for (const s of opts.stop ?? []) await s.stop();
      await server.close(); // stops accepting at once, then waits for requests and tasks
      announce(`restart: old server process ${process.pid} finished, exiting`);
      exit(0);
    })();
    return inProgress;
  };
  const onHup = () => void restart();
  process.on('SIGHUP', onHup);
  notifyRestartReady();
  return { restart, uninstall: () => process.off('SIGHUP', onHup) };
}
