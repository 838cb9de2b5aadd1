/** Run the built CLIs (`dist/src/cli/*.js`, as the package.json bin entries do) as child processes. */
import { createServer } from 'node:net';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const STOWAGE_BIN = `${ROOT}dist/src/cli/stowage.js`;
export const CLIENT_BIN = `${ROOT}dist/src/cli/stowage-client.js`;

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a CLI to completion. */
export function runCli(bin: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** A `stowage server` child process; resolves once it prints that it listens. */
export class ServerProcess {
  readonly child: ChildProcess;
  output = '';
  private readonly listening: Promise<void>;

  /**
   * `wrapper`: a command that runs the server as its last arguments (e.g. `unshare --pid --fork
   * --kill-child`, so that the server looks like another host's process to the others); `child` is
   * then the wrapper's process.
   */
  constructor(args: string[], env: NodeJS.ProcessEnv, wrapper: string[] = []) {
    const command = [...wrapper, process.execPath, STOWAGE_BIN, 'server', ...args];
    this.child = spawn(command[0]!, command.slice(1), {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.listening = new Promise((resolve, reject) => {
      const onData = (d: Buffer) => {
        this.output += d.toString();
        if (/stowage server listening on/.test(this.output)) resolve();
      };
      this.child.stdout!.on('data', onData);
      this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()));
      this.child.on('exit', (code) =>
        reject(new Error(`server exited with ${code} before listening:\n${this.output}`)),
      );
    });
  }

  async started(timeoutMs = 120_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.listening,
        new Promise<void>((_r, reject) => {
          timer = setTimeout(
            () => reject(new Error(`server did not start in time:\n${this.output}`)),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer); // a pending timer would keep the test process alive for its whole length
    }
  }

  stop(): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.kill('SIGTERM');
    });
  }
}

/** A TCP port on 127.0.0.1 nothing listens on right now. */
export function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

/** Whether process `pid` exists. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
