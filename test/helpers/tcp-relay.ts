/**
 * A TCP relay process (test/cluster/fixtures/tcp-relay.ts) between a server and etcd: SIGKILLing
 * it cuts the server off for real (the kernel closes every relayed connection and new ones are
 * refused); started again on the same port, it reconnects the server.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const FIXTURE = fileURLToPath(new URL('../cluster/fixtures/tcp-relay.ts', import.meta.url));

export interface TcpRelay {
  /** The loopback port it listens on. */
  port: number;
  child: ChildProcess;
  /** SIGKILL it; resolves once it is gone. */
  kill(): Promise<void>;
}

/** Start a relay to `upstream` (`HOST:PORT`) on `port` (0: a free one); resolves once it listens. */
export async function startTcpRelay(upstream: string, port = 0): Promise<TcpRelay> {
  const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, upstream, String(port)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`relay exited (${code})`)));
  });
  return {
    port: Number(line),
    child,
    kill: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGKILL');
      await gone;
    },
  };
}
