/**
 * Progress for backups and restores: a cli-progress bar on a terminal (throughput, new and
 * reused bytes, ETA), plain lines at most every few seconds otherwise, so logs of scheduled
 * backups stay readable.
 */
import { createRequire } from 'node:module';

/** cli-progress, loaded when a bar is drawn (on a terminal): 20-30 ms of every start otherwise. */
const loadCliProgress = () => createRequire(import.meta.url)('cli-progress') as typeof import('cli-progress');

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v.toFixed(0) : v.toFixed(2)} ${units[i]}`;
}

export function formatRate(bytes: number, ms: number): string {
  return `${formatBytes(ms > 0 ? (bytes * 1000) / ms : 0)}/s`;
}

export interface ProgressValues {
  bytes: number;
  newBytes?: number;
  reusedBytes?: number;
}

export interface Progress {
  update(v: ProgressValues): void;
  stop(): void;
}

const PLAIN_INTERVAL_MS = 5000;

/** A progress display for one archive of `total` bytes (0 when unknown). */
export function startProgress(
  label: string,
  total: number,
  opts: { tty?: boolean; out?: NodeJS.WritableStream } = {},
): Progress {
  const out = opts.out ?? process.stderr;
  const tty = opts.tty ?? Boolean((out as NodeJS.WriteStream).isTTY);
  const started = Date.now();
  let last: ProgressValues = { bytes: 0 };
  const line = (v: ProgressValues) => {
    const parts = [
      `${label}: ${formatBytes(v.bytes)}${total ? ` of ${formatBytes(total)}` : ''}`,
      formatRate(v.bytes, Date.now() - started),
    ];
    if (v.newBytes !== undefined) parts.push(`new ${formatBytes(v.newBytes)}`);
    if (v.reusedBytes !== undefined) parts.push(`reused ${formatBytes(v.reusedBytes)}`);
    return parts.join(', ');
  };
  if (!tty) {
    let lastPrint = started;
    return {
      update(v) {
        last = v;
        if (Date.now() - lastPrint >= PLAIN_INTERVAL_MS) {
          lastPrint = Date.now();
          out.write(line(v) + '\n');
        }
      },
      stop() {
        out.write(line(last) + '\n');
      },
    };
  }
  const cliProgress = loadCliProgress();
  const bar = new cliProgress.SingleBar(
    {
      stream: out as NodeJS.WriteStream,
      format: `${label} |{bar}| {percentage}% | {done} | {speed} | new {newb} reused {reused} | ETA {eta_formatted}`,
      hideCursor: true,
      etaBuffer: 50,
      fps: 5,
    },
    cliProgress.Presets.shades_classic,
  );
  bar.start(Math.max(total, 1), 0, { done: formatBytes(0), speed: '-', newb: '-', reused: '-' });
  return {
    update(v) {
      last = v;
      bar.update(Math.min(v.bytes, Math.max(total, 1)), {
        done: formatBytes(v.bytes),
        speed: formatRate(v.bytes, Date.now() - started),
        newb: v.newBytes === undefined ? '-' : formatBytes(v.newBytes),
        reused: v.reusedBytes === undefined ? '-' : formatBytes(v.reusedBytes),
      });
    },
    stop() {
      if (total) bar.update(Math.max(total, 1));
      bar.stop();
      out.write(line(last) + '\n');
    },
  };
}
