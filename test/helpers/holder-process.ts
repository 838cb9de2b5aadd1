/** Spawns test/maintenance/fixtures/operation-holder.ts as a real child process and talks to it. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { StowagePaths } from '../../src/config/paths.js';
import type { OperationClass } from '../../src/maintenance/maintenance-mode.js';

const FIXTURE = fileURLToPath(new URL('../maintenance/fixtures/operation-holder.ts', import.meta.url));

export interface HolderReply {
  ok: boolean;
  code?: string;
  message?: string;
  [k: string]: unknown;
}

export class HolderProcess {
  readonly child: ChildProcess;
  private readonly waiting: Array<(r: HolderReply) => void> = [];
  private readonly ready: Promise<HolderReply>;

  /**
   * A holder on the instance at `paths`; or, with `fixture`, another fixture speaking the same
   * protocol (the etcd holder of test/cluster/) with `env` added to this process's environment.
   */
  constructor(paths: StowagePaths | { fixture: string; env: Record<string, string> }) {
    const own = 'fixture' in paths;
    this.child = spawn(process.execPath, ['--import', 'tsx', own ? paths.fixture : FIXTURE], {
      env: {
        ...process.env,
        ...(own
          ? paths.env
          : {
              STOWAGE_CONFIG_DIR: paths.configDir,
              STOWAGE_DATA_DIR: paths.dataDir,
              STOWAGE_RUN_DIR: paths.runDir,
            }),
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    const rl = createInterface({ input: this.child.stdout! });
    rl.on('line', (line) => this.waiting.shift()?.(JSON.parse(line) as HolderReply));
    this.ready = new Promise((resolve) => this.waiting.push(resolve));
  }

  get pid(): number {
    return this.child.pid!;
  }

  async start(): Promise<this> {
    await this.ready;
    return this;
  }

  send(cmd: Record<string, unknown>): Promise<HolderReply> {
    return new Promise((resolve) => {
      this.waiting.push(resolve);
      this.child.stdin!.write(JSON.stringify(cmd) + '\n');
    });
  }

  /** Admit an operation and keep holding it; returns its registry id. */
  async hold(
    store: string,
    op: OperationClass,
    kind = 'test',
    detail?: string,
    authId?: string,
  ): Promise<number> {
    const r = await this.send({ cmd: 'lookup', store, op, kind, detail, authId });
    if (!r.ok) throw new Error(`holder ${this.pid} refused: ${r.message}`);
    return r.id as number;
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    return new Promise((resolve) => {
      if (this.child.exitCode !== null || this.child.signalCode !== null) return resolve();
      this.child.once('exit', () => resolve());
      this.child.kill(signal);
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.stdin!.end();
    await exited;
  }
}
