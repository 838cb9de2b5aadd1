/**
 * Backup throughput against peers:
 *   node --import tsx bench/backup.ts [--size MB] [--files N] [--runs R] [--only mixed|small] [--keep] [--tsx]
 *                                     [--tar] [--steps first,restore] [--baseline DIR]
 *                                     [--profile DIR] [--no-peers] [--fresh-ext4 GIB]
 *
 * Two datasets, each backed up with stowage-client (server on localhost over HTTPS), restic and
 * borg (Debian packages `restic`, `borgbackup`) into fresh repositories on the same disk:
 * - `mixed` (`--size`, default 100 MB; the reference run is `--size 1024`): 40 % random,
 *   30 % text, 20 % copies of the random files, 10 % small files, plus one 10 MiB file. Steps: a
 *   first backup, an unchanged second backup, a third after that 10 MiB file was rewritten (the
 *   nightly case: only that file should be read), and a full restore of the first snapshot.
 * - `small` (`--files`, default 100 000; 0 skips it): that many files of 0.1 to 2 KB in a tree four
 *   directories deep. Steps: first backup, unchanged second backup, a third after one of the
 *   files was rewritten (the nightly case of a tree of many files), restore.
 *
 * Stowage archives the trees as pxar (`data.pxar:DIR`, with a catalog: PBS's format, what a user
 * of proxmox-backup-client gets). `--tar` also runs it with the trees archived as tar
 * (`data.tar:DIR`, as the tool `stowage-tar`) and prints pxar's time over tar's per step.
 *
 * `--steps` runs only the listed steps of the mixed set (the first backup always runs: the others
 * need it). `--baseline DIR` also runs Stowage built from another checkout (e.g. `git worktree add
 * /tmp/base main`), as the tool `stowage-base`, and prints this tree's time over the baseline's
 * per step: a change measured against the code before it in the same run, under the same load.
 *
 * `--no-peers` leaves restic and borg out (Stowage and its baseline only).
 *
 * `--fresh-ext4 GIB` (as root) works on a new ext4 file system of that size with a journal, as
 * servers have them, on a loop device made for the run in $TMPDIR: every invocation starts on the
 * same empty disk. Without it the work directory is $TMPDIR's. On an ext4 without a journal
 * (this project's VMs' root file system) creating a file looks past every inode freed in the
 * last minutes (the kernel's `recently_deleted()`): a restore that follows another tool's
 * deleted restore, or a previous run's cleanup, took up to 6 times as long as the same restore on
 * a fresh disk (docs/performance.md, seventeenth round); the benchmark warns when it runs there.
 *
 * `--runs R` (default 1) repeats everything R times, interleaved (every run does every tool, the
 * tools' order rotates), and prints each run and the median. Ratios are peer time / Stowage time
 * from the medians of the same invocation: above 1 means Stowage is faster. Times are wall clock
 * of the whole command, process start included, as a user would see them; peak RSS is each
 * client process's VmHWM (from /usr/bin/time: the whole process, worker threads included), and
 * `server` is Stowage's server's peak RSS during the command (its VmHWM, reset before the command
 * through /proc/PID/clear_refs). CPU s is the command's user + system time (all its threads) plus, for Stowage, its server's during the command: the work done, less noisy than the
 * wall time on a shared machine. Not a test: the machine should be idle.
 *
 * Stowage runs as a user runs it, from JavaScript: the sources are transpiled (esbuild, one file
 * per module like `tsc`) into the work directory first. `--tsx` runs them through tsx instead,
 * which adds about half a second of compiling to every process and worker thread.
 *
 * Every backup starts at least `RACY_MARGIN_MS` after the data was written: files changed that
 * recently are never trusted by the client's tree cache (docs/performance.md), and a user's tree
 * is rarely written in the second before a backup. Every step starts after a `sync` (not timed):
 * no tool pays for writing back another's data, or the dataset's.
 *
 * `--profile DIR` runs Stowage's server and client under `node --cpu-prof` (every thread), the
 * profiles of each step in DIR/<dataset>-<step>-<run>/; `bench/profile-summary.ts DIR/...`
 * sums them by function. Profiling slows the run: its times are not comparable.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RACY_MARGIN_MS } from '../src/client/tar-archive.js';
import { median, processCpuSeconds } from './lib/measure.js';
import {
  fromSources,
  launcherEnv,
  profileFlags,
  repoRoot,
  type Runner,
  startServer,
  transpile,
} from './lib/stowage-process.js';

const args = process.argv.slice(2);
const arg = (name: string, def: string) => {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? def : (args[i + 1] ?? def);
};
const sizeMb = Number(arg('size', '100')) || 100;
const smallFiles = Number(arg('files', '100000'));
const runs = Math.max(1, Number(arg('runs', '1')) || 1);
const only = arg('only', '');
const keep = args.includes('--keep');
const useTsx = args.includes('--tsx');
const profileDir = arg('profile', '');
const baselineDir = arg('baseline', '');
const onlySteps = arg('steps', '');
const freshExt4GiB = Number(arg('fresh-ext4', '0'));
const PASSWORD = 'bench-secret-1';
const CHANGING_FILE = 'changing/ten-mib.bin';
const CHANGING_SIZE = 10 * 1024 * 1024;

function prng(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let off = 0, i = 0; off < n; i++)
    off += createHash('sha256').update(`${seed}:${i}`).digest().copy(out, off);
  return out;
}

/**
 * About `bytes` of data: 40% random, 30% text, 20% duplicates of random files, 10% small files,
 * and the 10 MiB file the third backup finds changed.
 */
function generateMixed(dir: string, bytes: number): void {
  const fileSize = 8 * 1024 * 1024;
  for (const d of ['random', 'text', 'dup', 'small', 'changing'])
    mkdirSync(join(dir, d), { recursive: true });
  const randomFiles = Math.max(1, Math.round((bytes * 0.4) / fileSize));
  for (let i = 0; i < randomFiles; i++)
    writeFileSync(join(dir, 'random', `r${i}.bin`), prng(`r${i}`, fileSize));
  const words = 'lorem ipsum dolor sit amet backup chunk datastore maintenance restore snapshot '.split(' ');
  const textFiles = Math.max(1, Math.round((bytes * 0.3) / fileSize));
  for (let i = 0; i < textFiles; i++) {
    const b = Buffer.alloc(fileSize);
    for (let off = 0, k = i; off < fileSize; k++)
      off += b.write(`${words[(k * 7919) % words.length]} ${k % 1000}\n`, off);
    writeFileSync(join(dir, 'text', `t${i}.txt`), b);
  }
  const dupFiles = Math.max(1, Math.round((bytes * 0.2) / fileSize));
  for (let i = 0; i < dupFiles; i++)
    writeFileSync(join(dir, 'dup', `d${i}.bin`), prng(`r${i % randomFiles}`, fileSize));
  const smallCount = Math.max(10, Math.round((bytes * 0.1) / 16384));
  for (let i = 0; i < smallCount; i++)
    writeFileSync(join(dir, 'small', `s${i}.dat`), prng(`s${i}`, 1024 + (i % 31) * 1000));
  writeFileSync(join(dir, CHANGING_FILE), prng('changing-0', CHANGING_SIZE));
}

/** The directory of the small set's file `i`: 10 files per directory, four levels deep. */
function smallFileDir(dir: string, i: number): string {
  const d = Math.floor(i / 10);
  return join(
    dir,
    `a${d % 10}`,
    `b${Math.floor(d / 10) % 10}`,
    `c${Math.floor(d / 100) % 10}`,
    `d${Math.floor(d / 1000)}`,
  );
}

/** `count` files of 100..2047 bytes, 10 per directory, in a tree four levels deep. */
function generateSmall(dir: string, count: number): void {
  const seed = createHash('sha256').update('small files').digest();
  for (let i = 0; i < count; i++) {
    const sub = smallFileDir(dir, i);
    if (i % 10 === 0) mkdirSync(sub, { recursive: true });
    const size = 100 + ((i * 7919) % 1948);
    const b = Buffer.allocUnsafe(size);
    for (let off = 0; off < size; off += 32) seed.copy(b, off, 0, Math.min(32, size - off));
    b.writeUInt32LE(i, 0);
    writeFileSync(join(sub, `f${i}.txt`), b);
  }
}

/** Regular files under `dir` and the sum of their sizes. */
function treeSize(dir: string): { files: number; bytes: number } {
  const r = spawnSync('find', [dir, '-type', 'f', '-printf', '%s\n'], {
    encoding: 'utf8',
    maxBuffer: 1 << 28,
  });
  const sizes = r.stdout.split('\n').filter((l) => l !== '');
  return { files: sizes.length, bytes: sizes.reduce((a, l) => a + Number(l), 0) };
}

interface Measure {
  secs: number;
  /** Peak RSS of the command's process, KiB. */
  rssKb: number;
  /** CPU time, user + system, of the command (and its threads and children), plus Stowage's server's during it. */
  cpuSecs: number;
  /** Stowage's server's peak RSS during the command, KiB (0: no server). */
  serverRssKb: number;
}

/**
 * Reset a process's peak RSS (VmHWM) to its current RSS (`clear_refs` 5, Linux 4.0+), so that the
 * next `peakRssKb` is the peak since now. False where that is not allowed.
 */
function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** A process's peak RSS (VmHWM), KiB. */
function peakRssKb(pid: number): number {
  const m = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

const haveTime = spawnSync('/usr/bin/time', ['-f', '%M', 'true']).status === 0;

/**
 * Run one command; `serverPid`'s CPU time during it is added to the command's own (Stowage's
 * client and server share the machine's cores; restic and borg have no server).
 */
function timed(
  cmd: string,
  argv: string[],
  env: NodeJS.ProcessEnv,
  cwd = repoRoot,
  serverPid?: number,
): Measure {
  const rssFile = join(tmpdir(), `stowage-bench-rss-${process.pid}`);
  const [c, a] = haveTime ? ['/usr/bin/time', ['-f', '%U %S\n%M', '-o', rssFile, cmd, ...argv]] : [cmd, argv];
  // Every step starts with nothing dirty in the page cache: Stowage's server ends a backup with
  // a syncfs of the filesystem (as PBS does), which would otherwise also write back what the
  // dataset's generation or the previous tool left behind, and charge it to Stowage.
  spawnSync('sync');
  const server0 = serverPid ? processCpuSeconds(serverPid) : 0;
  const serverPeak = serverPid !== undefined && resetPeakRss(serverPid);
  const t0 = process.hrtime.bigint();
  const r = spawnSync(c, a, {
    env: { ...process.env, ...env },
    cwd,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0)
    throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  let rssKb = 0;
  let cpuSecs = serverPid ? processCpuSeconds(serverPid) - server0 : 0;
  const serverRssKb = serverPeak ? peakRssKb(serverPid) : 0;
  if (haveTime) {
    const lines = readFileSync(rssFile, 'utf8').trim().split('\n');
    rssKb = Number(lines.at(-1));
    const [user, sys] = (lines.at(-2) ?? '').split(' ').map(Number);
    cpuSecs += (user ?? 0) + (sys ?? 0);
    rmSync(rssFile, { force: true });
  }
  return { secs, rssKb, cpuSecs, serverRssKb };
}

/** One tool on one dataset in one run: a fresh repository, then the steps in order. */
interface ToolSession {
  first(): Measure;
  second(): Measure;
  changed(): Measure;
  restore(target: string): Measure;
  close(): void | Promise<void>;
}

async function stowageSession(
  data: string,
  work: string,
  run: Runner,
  tag: string,
  format: 'tar' | 'pxar',
): Promise<ToolSession> {
  const base = tag.includes('stowage-base');
  if (base) run = baselineRun!;
  const sources = base ? baselineDir : repoRoot;
  const server = await startServer(join(work, 'server'), run, {
    password: PASSWORD,
    sources,
    profile: profileDir && join(profileDir, `${tag}-server`),
  });
  const env = {
    HOME: join(work, 'home'),
    STOWAGE_REPOSITORY: `root@pam@${server.host}:${server.port}:local`,
    STOWAGE_PASSWORD: PASSWORD,
    STOWAGE_FINGERPRINT: server.fingerprint,
    ...launcherEnv('src/cli/stowage-client.ts', sources),
  };
  const client = (step: Step) => [
    ...profileFlags(profileDir && join(profileDir, `${tag}-${step}`)),
    ...run('src/cli/stowage-client.ts'),
  ];
  const backup = (step: Step, time: number) =>
    timed(
      process.execPath,
      [
        ...client(step),
        'backup',
        `data.${format}:${data}`,
        '--backup-id',
        'bench',
        '--backup-time',
        String(time),
      ],
      env,
      undefined,
      server.pid,
    );
  return {
    first: () => backup('first', 1700000000),
    second: () => backup('second', 1700000001),
    changed: () => backup('changed', 1700000002),
    restore: (target) =>
      timed(
        process.execPath,
        [...client('restore'), 'restore', 'host/bench/2023-11-14T22:13:20Z', `data.${format}`, target],
        env,
        undefined,
        server.pid,
      ),
    close: () => server.stop(),
  };
}

function resticSession(data: string, work: string): ToolSession {
  const env = {
    RESTIC_PASSWORD: PASSWORD,
    RESTIC_REPOSITORY: join(work, 'repo'),
    RESTIC_CACHE_DIR: join(work, 'cache'),
  };
  timed('restic', ['init'], env);
  const backup = () => timed('restic', ['backup', '--quiet', data], env);
  let firstId = '';
  return {
    first: () => {
      const m = backup();
      const r = spawnSync('restic', ['snapshots', '--json'], {
        env: { ...process.env, ...env },
        encoding: 'utf8',
      });
      firstId = (JSON.parse(r.stdout) as Array<{ short_id: string }>)[0]!.short_id;
      return m;
    },
    second: backup,
    changed: backup,
    restore: (target) => timed('restic', ['restore', firstId, '--quiet', '--target', target], env),
    close: () => {},
  };
}

function borgSession(data: string, work: string): ToolSession {
  const repo = join(work, 'repo');
  const env = {
    BORG_PASSPHRASE: '',
    BORG_BASE_DIR: join(work, 'base'),
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
  };
  timed('borg', ['init', '--encryption', 'none', repo], env);
  return {
    first: () => timed('borg', ['create', `${repo}::a1`, data], env),
    second: () => timed('borg', ['create', `${repo}::a2`, data], env),
    changed: () => timed('borg', ['create', `${repo}::a3`, data], env),
    restore: (target) => {
      mkdirSync(target, { recursive: true });
      return timed('borg', ['extract', `${repo}::a1`], env, target);
    },
    close: () => {},
  };
}

type Step = 'first' | 'second' | 'changed' | 'restore';
type Tool = 'stowage' | 'stowage-tar' | 'stowage-base' | 'restic' | 'borg';

/** `stowage` (and `stowage-base`) archive trees as pxar; `--tar` adds the tar format. */
const tools: Tool[] = [
  'stowage',
  ...(args.includes('--tar') ? (['stowage-tar'] as const) : []),
  ...(baselineDir ? (['stowage-base'] as const) : []),
];
let baselineRun: Runner | undefined;
for (const tool of args.includes('--no-peers') ? [] : (['restic', 'borg'] as const)) {
  if (spawnSync('which', [tool]).status === 0) tools.push(tool);
  else
    process.stderr.write(
      `${tool} not installed (apt-get install ${tool === 'borg' ? 'borgbackup' : tool}), skipped\n`,
    );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** results[step][tool] = one Measure per run */
type Results = Partial<Record<Step, Partial<Record<Tool, Measure[]>>>>;

async function benchDataset(
  name: string,
  data: string,
  steps: Step[],
  work: string,
  run: Runner,
  /** What run `r` (from 1) changes before its `changed` step. */
  change: (r: number) => void,
): Promise<Results> {
  const results: Results = {};
  const record = (step: Step, tool: Tool, m: Measure) => {
    ((results[step] ??= {})[tool] ??= []).push(m);
    process.stderr.write(
      `  ${name} run ${step.padEnd(7)} ${tool.padEnd(12)} ${m.secs.toFixed(2)} s  (CPU ${m.cpuSecs.toFixed(2)} s)\n`,
    );
  };
  for (let r = 0; r < runs; r++) {
    process.stderr.write(`${name}: run ${r + 1} of ${runs}\n`);
    const order = tools.map((_, i) => tools[(i + r) % tools.length]!);
    const sessions = new Map<Tool, ToolSession>();
    const dir = (tool: Tool) => join(work, `${name}-${tool}-${r}`);
    for (const tool of order) {
      mkdirSync(dir(tool), { recursive: true });
      sessions.set(
        tool,
        tool.startsWith('stowage')
          ? await stowageSession(
              data,
              dir(tool),
              run,
              `${name}-${tool}-${r}`,
              tool === 'stowage-tar' ? 'tar' : 'pxar',
            )
          : tool === 'restic'
            ? resticSession(data, dir(tool))
            : borgSession(data, dir(tool)),
      );
    }
    try {
      for (const tool of order) record('first', tool, sessions.get(tool)!.first());
      if (steps.includes('second'))
        for (const tool of order) record('second', tool, sessions.get(tool)!.second());
      if (steps.includes('changed')) {
        // A different 10 MiB in every run; aged past the racy margin as a nightly change would be.
        change(r + 1);
        await sleep(RACY_MARGIN_MS + 500);
        for (const tool of order) record('changed', tool, sessions.get(tool)!.changed());
      }
      for (const tool of steps.includes('restore') ? order : []) {
        const target = join(dir(tool), 'restore');
        record('restore', tool, sessions.get(tool)!.restore(target));
        rmSync(target, { recursive: true, force: true });
      }
    } finally {
      for (const s of sessions.values()) await s.close();
      if (!keep) for (const tool of order) rmSync(dir(tool), { recursive: true, force: true });
    }
  }
  return results;
}

function report(name: string, bytes: number, files: number, results: Results): void {
  const out = (s: string) => process.stdout.write(s + '\n');
  out(`\n== ${name}: ${(bytes / 1e6).toFixed(1)} MB, ${files} files, ${runs} run(s), median first`);
  out(
    `${'step'.padEnd(8)} ${'tool'.padEnd(13)} ${'median s'.padStart(9)} ${'MB/s'.padStart(8)} ${'CPU s'.padStart(7)} ${'peak RSS'.padStart(9)} ${'server'.padStart(9)}  runs (s)`,
  );
  for (const [step, byTool] of Object.entries(results) as Array<[Step, Partial<Record<Tool, Measure[]>>]>) {
    for (const tool of tools) {
      const ms = byTool[tool];
      if (!ms) continue;
      const med = median(ms.map((m) => m.secs));
      const rss = Math.max(...ms.map((m) => m.rssKb));
      const serverRss = Math.max(...ms.map((m) => m.serverRssKb));
      const mib = (kb: number) => (kb ? `${(kb / 1024).toFixed(0)} MiB` : '-').padStart(9);
      const cpu = median(ms.map((m) => m.cpuSecs));
      out(
        `${step.padEnd(8)} ${tool.padEnd(13)} ${med.toFixed(2).padStart(9)} ${(bytes / 1e6 / med).toFixed(1).padStart(8)} ${cpu.toFixed(2).padStart(7)} ${mib(rss)} ${mib(serverRss)}  ${ms.map((m) => m.secs.toFixed(2)).join(' ')}`,
      );
    }
    const s = byTool.stowage;
    if (!s) continue;
    const sm = median(s.map((m) => m.secs));
    const ratios = tools
      .filter((t) => !t.startsWith('stowage') && byTool[t])
      .map((t) => {
        const pm = median(byTool[t]!.map((m) => m.secs));
        const perRun = byTool[t]!.map((m, i) => (m.secs / s[i]!.secs).toFixed(2)).join('/');
        return `${(pm / sm).toFixed(2)}x ${t} (runs ${perRun})`;
      });
    if (ratios.length > 0)
      out(
        `${''.padEnd(8)} stowage vs ${ratios.join(', ')}  (peer time / stowage time: above 1 = stowage faster)`,
      );
    const b = byTool['stowage-base'];
    if (b)
      out(
        `${''.padEnd(8)} this tree / baseline: time ${(sm / median(b.map((m) => m.secs))).toFixed(2)} (runs ${s.map((m, i) => (m.secs / b[i]!.secs).toFixed(2)).join('/')}), CPU ${(median(s.map((m) => m.cpuSecs)) / median(b.map((m) => m.cpuSecs))).toFixed(2)} (runs ${s.map((m, i) => (m.cpuSecs / b[i]!.cpuSecs).toFixed(2)).join('/')})`,
      );
    const t = byTool['stowage-tar'];
    if (t)
      out(
        `${''.padEnd(8)} pxar / tar time ${(sm / median(t.map((m) => m.secs))).toFixed(2)} (runs ${s.map((m, i) => (m.secs / t[i]!.secs).toFixed(2)).join('/')}; at most 1.10 is the goal), CPU ${(median(s.map((m) => m.cpuSecs)) / median(t.map((m) => m.cpuSecs))).toFixed(2)}`,
      );
  }
}

/** Run `cmd`, throwing its stderr when it fails. */
function must(cmd: string, argv: string[]): string {
  const r = spawnSync(cmd, argv, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${argv.join(' ')}: ${r.stderr || r.error?.message}`);
  return r.stdout;
}

/** A new journaled ext4 of `gib` GiB mounted from a loop device: its mount point, and how to undo it. */
function freshExt4(gib: number): { dir: string; remove: () => void } {
  const image = join(tmpdir(), `stowage-bench-${process.pid}.ext4`);
  const dir = `${image}.mnt`;
  must('truncate', ['-s', `${gib}G`, image]);
  must('mkfs.ext4', ['-q', '-F', image]);
  mkdirSync(dir);
  must('mount', ['-o', 'loop', image, dir]);
  return {
    dir,
    remove: () => {
      must('umount', [dir]);
      rmSync(dir, { recursive: true, force: true });
      rmSync(image, { force: true });
    },
  };
}

/** Whether `dir` is on an ext4 without a journal (whose file creation depends on recent deletions). */
function onExt4WithoutJournal(dir: string): boolean {
  const r = spawnSync('findmnt', ['-n', '-o', 'SOURCE,FSTYPE', '-T', dir], { encoding: 'utf8' });
  const [source, type] = (r.stdout ?? '').trim().split(/\s+/);
  if (r.status !== 0 || type !== 'ext4' || !source?.startsWith('/dev/')) return false;
  const name = source.slice('/dev/'.length).replace(/\//g, '!');
  return !existsSync(`/proc/fs/jbd2/${name}-8`);
}

const fresh = freshExt4GiB > 0 ? freshExt4(freshExt4GiB) : undefined;
const work = mkdtempSync(join(fresh?.dir ?? tmpdir(), 'stowage-bench-'));
if (onExt4WithoutJournal(work))
  process.stderr.write(
    `warning: ${work} is on an ext4 without a journal: file creation there costs more after recent deletions (restores, small files); --fresh-ext4 GIB measures on a new journaled ext4\n`,
  );
try {
  const run = useTsx ? fromSources : transpile(join(work, 'build'));
  if (baselineDir) baselineRun = transpile(join(work, 'build-base'), baselineDir);
  if (only !== 'small') {
    const data = join(work, 'mixed');
    process.stderr.write(`generating ~${sizeMb} MB mixed dataset in ${data}\n`);
    generateMixed(data, sizeMb * 1e6);
    await sleep(RACY_MARGIN_MS + 500);
    const { files, bytes } = treeSize(data);
    const all: Step[] = ['first', 'second', 'changed', 'restore'];
    const steps = onlySteps ? all.filter((s) => s === 'first' || onlySteps.split(',').includes(s)) : all;
    const results = await benchDataset('mixed', data, steps, work, run, (r) =>
      writeFileSync(join(data, CHANGING_FILE), prng(`changing-${r}`, CHANGING_SIZE)),
    );
    report('mixed', bytes, files, results);
    if (!keep) rmSync(data, { recursive: true, force: true });
  }
  if (only !== 'mixed' && smallFiles > 0) {
    const data = join(work, 'small');
    process.stderr.write(`generating ${smallFiles} small files in ${data}\n`);
    generateSmall(data, smallFiles);
    await sleep(RACY_MARGIN_MS + 500);
    const { files, bytes } = treeSize(data);
    // the nightly case of a tree of many files: one of them rewritten (another each run)
    const changing = (r: number) => Math.floor((smallFiles * r) / 4) % smallFiles;
    const results = await benchDataset(
      'small',
      data,
      ['first', 'second', 'changed', 'restore'],
      work,
      run,
      (r) =>
        writeFileSync(join(smallFileDir(data, changing(r)), `f${changing(r)}.txt`), `changed in run ${r}\n`),
    );
    report('small', bytes, files, results);
  }
} finally {
  if (!keep) {
    rmSync(work, { recursive: true, force: true });
    fresh?.remove();
  } else process.stderr.write(`kept ${work}${fresh ? ' (mounted: umount it when done)' : ''}\n`);
}
