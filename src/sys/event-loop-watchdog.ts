/**
 * The server's last line of defence against a blocked event loop (issue 12, defect 1): a worker
 * thread watches a heartbeat the main thread writes every second. A stall is reported on stderr
 * once it has lasted `warnAfterMs`; once it has lasted `killAfterMs` the process is killed.
 *
 * Why kill: a process whose event loop never comes back answers nothing and cannot run its own
 * SIGTERM handler (signals are delivered to JavaScript by the same loop), so an operator's stop
 * would hang until systemd's SIGKILL. Everything the server writes is crash-safe (temp file and
 * rename; unfinished snapshots are removed at the next start), so ending the process is the
 * orderly outcome. Filesystem work that can stall runs on libuv's thread pool; this catches what
 * still slips through.
 */
import { Worker } from 'node:worker_threads';
import { BadRequestError } from '../errors.js';

export interface WatchdogOptions {
  /** Report a stall after this long (default 5 s). */
  warnAfterMs?: number;
  /** Kill the process after this long (default 120 s; 0 never kills). */
  killAfterMs?: number;
}

export interface Watchdog {
  stop(): Promise<void>;
}

const BEAT_MS = 1000;

// Runs in the worker: a plain JavaScript module, so that it needs no TypeScript loader.
const WORKER_SOURCE = `
import { workerData } from 'node:worker_threads';
import { writeSync } from 'node:fs';
// straight to fd 2: a worker's process.stderr goes through the main thread, which is the one stuck
const say = (line) => { try { writeSync(2, line + '\\n'); } catch {} };
const beat = new BigInt64Array(workerData.beat);
const { warnAfterMs, killAfterMs, checkMs } = workerData;
let warned = 0;
setInterval(() => {
  const stalled = Date.now() - Number(Atomics.load(beat, 0));
  if (stalled < warnAfterMs) { warned = 0; return; }
  if (killAfterMs > 0 && stalled >= killAfterMs) {
    say('stowage: event loop blocked for ' + Math.round(stalled / 1000) + ' s - killing the process (nothing it writes is left half-done)');
    process.kill(process.pid, 'SIGKILL');
  }
  if (stalled - warned >= warnAfterMs) {
    warned = stalled;
    say('stowage: warning: event loop blocked for ' + Math.round(stalled / 1000) + ' s; requests and signals wait');
  }
}, checkMs);
`;

export function startEventLoopWatchdog(opts: WatchdogOptions = {}): Watchdog {
  const warnAfterMs = opts.warnAfterMs ?? 5_000;
  const killAfterMs = opts.killAfterMs ?? 120_000;
  const beat = new BigInt64Array(new SharedArrayBuffer(8));
  const touch = () => Atomics.store(beat, 0, BigInt(Date.now()));
  touch();
  const timer = setInterval(touch, Math.min(BEAT_MS, warnAfterMs / 4));
  timer.unref();
  const worker = new Worker(new URL(`data:text/javascript,${encodeURIComponent(WORKER_SOURCE)}`), {
    workerData: { beat: beat.buffer, warnAfterMs, killAfterMs, checkMs: Math.min(500, warnAfterMs / 4) },
  });
  worker.unref();
  return {
    async stop() {
      clearInterval(timer);
      await worker.terminate();
    },
  };
}

/** `STOWAGE_STALL_KILL_SECONDS` (default 120; 0 disables the kill) as milliseconds. */
export function stallKillAfterMs(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.STOWAGE_STALL_KILL_SECONDS;
  if (raw === undefined || raw === '') return 120_000;
  if (!/^\d+$/.test(raw))
    throw new BadRequestError(`STOWAGE_STALL_KILL_SECONDS: '${raw}' is not a whole number of seconds`);
  return Number(raw) * 1000;
}
