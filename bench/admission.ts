/**
 * Cost of admission + release (lookupDatastore → handle.release) per operation, in one process
 * and in two processes contending for the same datastore, next to a bare flock + write + unlock
 * cycle measured in the same run on the same disk (the floor any cross-process scheme pays).
 *
 *   node --import tsx bench/admission.ts [--ops 3000]
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import fsExt from 'fs-ext';
import { DatastoreConfigFile } from '../src/config/datastore-config.js';
import type { StowagePaths } from '../src/config/paths.js';
import { openDatastoreAccess } from '../src/maintenance/open-datastore-access.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1]!;
};
const OPS = Number(arg('ops', '3000'));

async function admissionLoop(paths: StowagePaths, ops: number): Promise<number> {
  const access = openDatastoreAccess(paths);
  const start = process.hrtime.bigint();
  for (let i = 0; i < ops; i++) {
    const h = await access.lookupDatastore('bench', 'read', { kind: 'bench' });
    await h.release();
  }
  const secs = Number(process.hrtime.bigint() - start) / 1e9;
  access.close();
  return secs;
}

function flockLoop(dir: string, ops: number): number {
  const lockPath = join(dir, 'bare.lck');
  const start = process.hrtime.bigint();
  const buf = Buffer.from('12345678');
  for (let i = 0; i < ops; i++) {
    const fd = openSync(lockPath, 'a');
    fsExt.flockSync(fd, 'ex');
    const data = openSync(join(dir, 'bare.data'), 'w');
    writeSync(data, buf);
    closeSync(data);
    closeSync(fd);
  }
  return Number(process.hrtime.bigint() - start) / 1e9;
}

async function child(): Promise<void> {
  // start together: every child waits for the same wall-clock instant
  const at = Number(arg('start-at', '0'));
  while (Date.now() < at) await new Promise((r) => setTimeout(r, 1));
  const paths = JSON.parse(arg('paths', '{}')) as StowagePaths;
  const secs =
    arg('mode', 'admission') === 'admission'
      ? await admissionLoop(paths, OPS)
      : flockLoop(arg('dir', ''), OPS);
  process.stdout.write(JSON.stringify({ secs }) + '\n');
}

/** Run `n` children that start their loops at the same instant; returns the slowest loop's seconds. */
async function runChildren(n: number, extra: string[]): Promise<number> {
  const self = fileURLToPath(import.meta.url);
  const startAt = String(Date.now() + 3000);
  const runs = Array.from(
    { length: n },
    () =>
      new Promise<number>((resolve, reject) => {
        const c = spawn(
          process.execPath,
          ['--import', 'tsx', self, '--child', '--ops', String(OPS), '--start-at', startAt, ...extra],
          { stdio: ['ignore', 'pipe', 'inherit'] },
        );
        let out = '';
        c.stdout.on('data', (d: Buffer) => (out += d.toString()));
        c.on('exit', (code) =>
          code === 0
            ? resolve((JSON.parse(out) as { secs: number }).secs)
            : reject(new Error(`child exited ${code}`)),
        );
      }),
  );
  return Math.max(...(await Promise.all(runs)));
}

async function main(): Promise<void> {
  if (args.includes('--child')) return child();
  const root = mkdtempSync(join(tmpdir(), 'stowage-bench-'));
  try {
    const paths: StowagePaths = { configDir: join(root, 'etc'), dataDir: root, runDir: join(root, 'run') };
    const store = join(root, 'store');
    mkdirSync(join(store, '.chunks', '0000'), { recursive: true });
    writeFileSync(join(store, '.lock'), '');
    await new DatastoreConfigFile(paths.configDir).update((s) =>
      s.set('bench', { name: 'bench', path: store }),
    );
    await admissionLoop(paths, 200); // warm up
    flockLoop(root, 200);

    const flock1 = OPS / flockLoop(root, OPS);
    const adm1 = OPS / (await admissionLoop(paths, OPS));
    // Two processes contending: total throughput over the slower one's loop.
    const adm2 =
      (2 * OPS) / (await runChildren(2, ['--mode', 'admission', '--paths', JSON.stringify(paths)]));
    const flock2 = (2 * OPS) / (await runChildren(2, ['--mode', 'flock', '--dir', root]));

    const row = (name: string, v: number, ref: number) =>
      `${name.padEnd(44)} ${Math.round(v).toString().padStart(8)} ops/s   ${(v / ref).toFixed(2)}x of bare flock+write`;
    console.log(`admission + release, ${OPS} operations per process (2 cores)`);
    console.log(row('bare flock+write+unlock, 1 process', flock1, flock1));
    console.log(row('lookupDatastore+release, 1 process', adm1, flock1));
    console.log(row('bare flock+write+unlock, 2 processes', flock2, flock2));
    console.log(row('lookupDatastore+release, 2 processes', adm2, flock2));
    console.log(
      `per operation: ${(1e6 / adm1).toFixed(0)} µs (1 process), bare cycle ${(1e6 / flock1).toFixed(0)} µs`,
    );
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
