/**
 * How quickly a maintenance mode takes effect across processes, and how quickly a drain wait
 * ends (issue 12's benchmarks):
 *
 * - **Mode change → first refusal.** A second process admits and releases write operations in a
 *   loop; this process sets read-only. Measured: from the moment `setMaintenanceMode` is called
 *   to the second process's first refusal.
 * - **Drain latency.** A second process holds a write operation; this process sets read-only and
 *   waits for the drain. Measured: from the holder's release to the end of the wait.
 *
 * Reference, measured in the same run: one admit + release cycle of the looping process (the
 * finest step a refusal can be seen at) and a bare flock hand-over between two processes (the
 * floor for any cross-process wake-up on this disk). Timestamps of both processes come from the
 * same clock (`performance.timeOrigin + performance.now()`, CLOCK_REALTIME based).
 *
 *   node --import tsx bench/maintenance-latency.ts [--rounds 20]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import fsExt from 'fs-ext';
import { DatastoreConfigFile } from '../src/config/datastore-config.js';
import type { StowagePaths } from '../src/config/paths.js';
import { setMaintenanceMode, waitForDrain } from '../src/maintenance/maintenance-control.js';
import { openDatastoreAccess } from '../src/maintenance/open-datastore-access.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : args[i + 1]!;
};
const ROUNDS = Number(arg('rounds', '20'));
const STORE = 'bench';
const now = () => performance.timeOrigin + performance.now();

// ---- child roles -----------------------------------------------------------------------------

/** Admit and release writes forever; print `refused <t>` at each first refusal after admissions. */
async function looper(paths: StowagePaths): Promise<void> {
  const access = openDatastoreAccess(paths);
  let admitting = false;
  let cycles = 0;
  let cycleStart = now();
  for (;;) {
    try {
      const h = await access.lookupDatastore(STORE, 'ingest', { kind: 'bench' });
      await h.release();
      if (!admitting) console.log('admitting');
      admitting = true;
      if (++cycles === 500) {
        console.log(`cycle ${(now() - cycleStart) / cycles}`);
        cycles = 0;
        cycleStart = now();
      }
    } catch {
      if (admitting) console.log(`refused ${now()}`);
      admitting = false;
      cycles = 0;
      cycleStart = now();
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

/** Hold one write operation; release it on `release` from stdin and print `released <t>`. */
async function holder(paths: StowagePaths): Promise<void> {
  const access = openDatastoreAccess(paths);
  const rl = createInterface({ input: process.stdin });
  let h = await access.lookupDatastore(STORE, 'ingest', { kind: 'bench-hold' });
  console.log('holding');
  for await (const line of rl) {
    if (line === 'release') {
      const t = now();
      await h.release();
      console.log(`released ${t}`);
    } else if (line === 'hold') {
      h = await access.lookupDatastore(STORE, 'ingest', { kind: 'bench-hold' });
      console.log('holding');
    }
  }
}

/** Take the flock when told, print `locked <t>`, release. */
function flocker(dir: string): void {
  const fd = openSync(join(dir, 'handover.lck'), 'a');
  const rl = createInterface({ input: process.stdin });
  console.log('ready');
  rl.on('line', () => {
    fsExt.flockSync(fd, 'ex');
    console.log(`locked ${now()}`);
    fsExt.flockSync(fd, 'un');
  });
}

// ---- parent ------------------------------------------------------------------------------------

function spawnRole(
  role: string,
  extra: string[],
): { proc: ChildProcess; next: (prefix: string) => Promise<string> } {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', fileURLToPath(import.meta.url), '--role', role, ...extra],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  const waiting: Array<{ prefix: string; resolve: (l: string) => void }> = [];
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    const i = waiting.findIndex((w) => line.startsWith(w.prefix));
    if (i >= 0) waiting.splice(i, 1)[0]!.resolve(line);
  });
  return { proc, next: (prefix) => new Promise((resolve) => waiting.push({ prefix, resolve })) };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const p95 = (xs: number[]) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * 0.95))]!;
const fmt = (ms: number) => `${ms.toFixed(2)} ms`;

async function main(): Promise<void> {
  const role = arg('role', '');
  const paths = JSON.parse(arg('paths', '{}')) as StowagePaths;
  if (role === 'looper') return looper(paths);
  if (role === 'holder') return holder(paths);
  if (role === 'flocker') return flocker(arg('dir', ''));

  const root = mkdtempSync(join(tmpdir(), 'stowage-bench-maint-'));
  const p: StowagePaths = { configDir: join(root, 'etc'), dataDir: root, runDir: join(root, 'run') };
  const store = join(root, 'store');
  mkdirSync(join(store, '.chunks', '0000'), { recursive: true });
  writeFileSync(join(store, '.lock'), '');
  await new DatastoreConfigFile(p.configDir).update((s) => void s.set(STORE, { name: STORE, path: store }));
  const access = openDatastoreAccess(p);
  const children: ChildProcess[] = [];
  try {
    // 1. mode change -> first refusal in another process
    const loop = spawnRole('looper', ['--paths', JSON.stringify(p)]);
    children.push(loop.proc);
    const refusal: number[] = [];
    await loop.next('admitting');
    // the looper's own pace: three stretches of 500 admit+release cycles
    const cycle: number[] = [];
    for (let i = 0; i < 3; i++) cycle.push(Number((await loop.next('cycle')).split(' ')[1]));
    for (let i = 0; i < ROUNDS; i++) {
      const refused = loop.next('refused');
      const t0 = now();
      await setMaintenanceMode(access, STORE, { type: 'read-only', message: 'bench' });
      refusal.push(Number((await refused).split(' ')[1]) - t0);
      const admitting = loop.next('admitting');
      await setMaintenanceMode(access, STORE, undefined);
      await admitting;
    }
    loop.proc.kill();

    // 2. drain latency: holder releases -> waitForDrain returns
    const hold = spawnRole('holder', ['--paths', JSON.stringify(p)]);
    children.push(hold.proc);
    const drain: number[] = [];
    await hold.next('holding');
    for (let i = 0; i < ROUNDS; i++) {
      await setMaintenanceMode(access, STORE, { type: 'read-only', message: 'bench' });
      const waiting = waitForDrain(access, STORE, { timeoutMs: 30_000 });
      await new Promise((r) => setTimeout(r, 20)); // the wait is parked on the watch
      const released = hold.next('released');
      hold.proc.stdin!.write('release\n');
      const res = await waiting;
      const done = now();
      if (!res.drained) throw new Error('drain wait timed out');
      drain.push(done - Number((await released).split(' ')[1]));
      await setMaintenanceMode(access, STORE, undefined);
      const holding = hold.next('holding');
      hold.proc.stdin!.write('hold\n');
      await holding;
    }
    hold.proc.kill();

    // 3. reference: a bare flock hand-over between two processes
    const flock = spawnRole('flocker', ['--dir', root]);
    children.push(flock.proc);
    await flock.next('ready');
    const fd = openSync(join(root, 'handover.lck'), 'a');
    const handover: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      fsExt.flockSync(fd, 'ex');
      const locked = flock.next('locked');
      flock.proc.stdin!.write('go\n');
      await new Promise((r) => setTimeout(r, 5));
      const t = now();
      fsExt.flockSync(fd, 'un');
      handover.push(Number((await locked).split(' ')[1]) - t);
    }
    closeSync(fd);
    flock.proc.kill();

    const cyc = median(cycle);
    const hand = median(handover);
    console.log(`rounds: ${ROUNDS}`);
    console.log(`reference: one admit+release cycle in the looping process: ${fmt(cyc)} (median of 3 x 500)`);
    console.log(
      `reference: bare flock hand-over between two processes: median ${fmt(hand)}, p95 ${fmt(p95(handover))}`,
    );
    console.log(
      `mode change -> first refusal in another process: median ${fmt(median(refusal))}, p95 ${fmt(p95(refusal))}` +
        ` (${(median(refusal) / cyc).toFixed(1)}x one admission cycle)`,
    );
    console.log(
      `drain: last operation released -> waiter released: median ${fmt(median(drain))}, p95 ${fmt(p95(drain))}` +
        ` (${(median(drain) / hand).toFixed(1)}x a bare flock hand-over)`,
    );
  } finally {
    for (const c of children) c.kill('SIGKILL');
    access.close();
    rmSync(root, { recursive: true, force: true });
  }
}

await main();
