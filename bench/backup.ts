/**
 * Backup throughput against peers: `node --import tsx bench/backup.ts [--size MB] [--keep] [--tsx]`
 *
 * Generates one mixed dataset (random, text, duplicated files, many small files; default 100 MB,
 * the full run is `--size 1024`) and backs it up with stowage-client (server on localhost
 * over HTTPS), restic and borg (Debian packages `restic`, `borgbackup`), each into a fresh
 * repository on the same disk: first run, unchanged second run, full restore. Prints MB/s per
 * tool and Stowage's ratio to each peer. Times are wall clock of the whole command, process start
 * included, as a user would see them. Not a test: run it on an idle machine.
 *
 * Stowage runs as a user runs it, from JavaScript: the sources are transpiled (esbuild, one file
 * per module like `tsc`) into the work directory first. `--tsx` runs them through tsx instead,
 * which adds about half a second of compiling to every process and worker thread.
 *
 * The first backup starts at least `RACY_MARGIN_MS` after the dataset was written: files changed
 * that recently are never trusted by the client's tree cache (docs/performance.md), and a user's
 * tree is rarely written in the second before a backup.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { RACY_MARGIN_MS } from '../src/client/tar-archive.js';

const repoRoot = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const sizeMb = Number(args[args.indexOf('--size') + 1] ?? 100) || 100;
const keep = args.includes('--keep');
const useTsx = args.includes('--tsx');
const PASSWORD = 'bench-secret-1';

function prng(seed: string, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let off = 0, i = 0; off < n; i++)
    off += createHash('sha256').update(`${seed}:${i}`).digest().copy(out, off);
  return out;
}

/** About `bytes` of data: 40% random, 30% text, 20% duplicates of random files, 10% small files. */
function generate(dir: string, bytes: number): void {
  const fileSize = 8 * 1024 * 1024;
  mkdirSync(join(dir, 'random'), { recursive: true });
  mkdirSync(join(dir, 'text'), { recursive: true });
  mkdirSync(join(dir, 'dup'), { recursive: true });
  mkdirSync(join(dir, 'small'), { recursive: true });
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
}

function duSize(dir: string): number {
  const r = spawnSync('du', ['-sb', dir], { encoding: 'utf8' });
  return Number(r.stdout.split('\t')[0]);
}

function timed(cmd: string, argv: string[], env: NodeJS.ProcessEnv, cwd = repoRoot): number {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(cmd, argv, {
    env: { ...process.env, ...env },
    cwd,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.status !== 0)
    throw new Error(`${cmd} ${argv.join(' ')} failed (${r.status}): ${r.stderr || r.stdout}`);
  return secs;
}

interface Result {
  tool: string;
  first: number;
  second: number;
  restore: number;
}

/** How to run a TypeScript entry point of the repository: transpiled, or through tsx. */
type Runner = (tsPath: string) => string[];

/**
 * Transpile src/ and the server fixture into `out` (one .js per .ts, imports unchanged, as tsc
 * emits them), with the repository's node_modules and an ESM package.json beside them.
 */
function transpile(out: string): Runner {
  const esbuild = join(repoRoot, 'node_modules/.bin/esbuild');
  const entries = spawnSync('find', ['src', 'test/e2e/fixtures', '-name', '*.ts'], {
    cwd: repoRoot,
    encoding: 'utf8',
  })
    .stdout.split('\n')
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.d.ts'));
  const r = spawnSync(
    esbuild,
    [...entries, `--outdir=${out}`, '--outbase=.', '--format=esm', '--platform=node', '--log-level=warning'],
    { cwd: repoRoot, encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`esbuild failed: ${r.stderr}`);
  writeFileSync(join(out, 'package.json'), '{"type":"module"}\n');
  symlinkSync(join(repoRoot, 'node_modules'), join(out, 'node_modules'));
  return (tsPath) => [join(out, tsPath.replace(/\.ts$/, '.js'))];
}

const fromSources: Runner = (tsPath) => ['--import', 'tsx', join(repoRoot, tsPath)];

async function startServer(
  root: string,
  run: Runner,
): Promise<{ host: string; port: number; fingerprint: string; stop: () => void }> {
  const proc = spawn(process.execPath, [...run('test/e2e/fixtures/backup-server.ts'), root], {
    cwd: repoRoot,
    env: { ...process.env, ROOT_PASSWORD: PASSWORD },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: proc.stdout! }).once('line', resolve);
    proc.once('exit', (c) => reject(new Error(`server exited with ${c}`)));
  });
  return {
    ...(JSON.parse(line) as { host: string; port: number; fingerprint: string }),
    stop: () => proc.kill('SIGKILL'),
  };
}

async function benchStowage(data: string, work: string, run: Runner, dataWritten: number): Promise<Result> {
  const server = await startServer(join(work, 'stowage-server'), run);
  const wait = dataWritten + RACY_MARGIN_MS + 500 - Date.now();
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  try {
    const env = {
      HOME: join(work, 'home'),
      STOWAGE_REPOSITORY: `root@pam@${server.host}:${server.port}:local`,
      STOWAGE_PASSWORD: PASSWORD,
      STOWAGE_FINGERPRINT: server.fingerprint,
    };
    const client = run('src/cli/stowage-client.ts');
    const first = timed(
      process.execPath,
      [...client, 'backup', `data.tar:${data}`, '--backup-id', 'bench', '--backup-time', '1700000000'],
      env,
    );
    const second = timed(
      process.execPath,
      [...client, 'backup', `data.tar:${data}`, '--backup-id', 'bench', '--backup-time', '1700000001'],
      env,
    );
    const restore = timed(
      process.execPath,
      [...client, 'restore', 'host/bench/2023-11-14T22:13:20Z', 'data.tar', join(work, 'stowage-restore')],
      env,
    );
    return { tool: 'stowage', first, second, restore };
  } finally {
    server.stop();
  }
}

function benchRestic(data: string, work: string): Result {
  const env = {
    RESTIC_PASSWORD: PASSWORD,
    RESTIC_REPOSITORY: join(work, 'restic-repo'),
    RESTIC_CACHE_DIR: join(work, 'restic-cache'),
  };
  timed('restic', ['init'], env);
  const first = timed('restic', ['backup', '--quiet', data], env);
  const second = timed('restic', ['backup', '--quiet', data], env);
  const restore = timed(
    'restic',
    ['restore', 'latest', '--quiet', '--target', join(work, 'restic-restore')],
    env,
  );
  return { tool: 'restic', first, second, restore };
}

function benchBorg(data: string, work: string): Result {
  const repo = join(work, 'borg-repo');
  const env = {
    BORG_PASSPHRASE: '',
    BORG_BASE_DIR: join(work, 'borg-base'),
    BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK: 'yes',
  };
  timed('borg', ['init', '--encryption', 'none', repo], env);
  const first = timed('borg', ['create', `${repo}::a1`, data], env);
  const second = timed('borg', ['create', `${repo}::a2`, data], env);
  const out = join(work, 'borg-restore');
  mkdirSync(out);
  const restore = timed('borg', ['extract', `${repo}::a1`], env, out);
  return { tool: 'borg', first, second, restore };
}

const work = mkdtempSync(join(tmpdir(), 'stowage-bench-'));
try {
  const data = join(work, 'data');
  process.stderr.write(`generating ~${sizeMb} MB dataset in ${data}\n`);
  generate(data, sizeMb * 1e6);
  const dataWritten = Date.now();
  const bytes = duSize(data);
  const run = useTsx ? fromSources : transpile(join(work, 'build'));
  const results: Result[] = [await benchStowage(data, work, run, dataWritten)];
  for (const [tool, fn] of [
    ['restic', benchRestic],
    ['borg', benchBorg],
  ] as const) {
    if (spawnSync('which', [tool]).status !== 0) {
      process.stderr.write(
        `${tool} not installed (apt-get install ${tool === 'borg' ? 'borgbackup' : tool}), skipped\n`,
      );
      continue;
    }
    results.push(fn(data, work));
  }
  const mbs = (secs: number) => bytes / 1e6 / secs;
  const cell = (v: number) => v.toFixed(1).padStart(9);
  process.stdout.write(`dataset: ${(bytes / 1e6).toFixed(1)} MB\n`);
  process.stdout.write(
    `${'tool'.padEnd(8)} ${'first MB/s'.padStart(11)} ${'second MB/s'.padStart(12)} ${'second s'.padStart(9)} ${'restore MB/s'.padStart(13)}\n`,
  );
  for (const r of results) {
    process.stdout.write(
      `${r.tool.padEnd(8)} ${cell(mbs(r.first)).padStart(11)} ${cell(mbs(r.second)).padStart(12)} ${cell(r.second)} ${cell(mbs(r.restore)).padStart(13)}\n`,
    );
  }
  const s = results[0]!;
  for (const peer of results.slice(1)) {
    process.stdout.write(
      `stowage/${peer.tool}: first ${(peer.first / s.first).toFixed(2)}x, second ${(peer.second / s.second).toFixed(2)}x, ` +
        `restore ${(peer.restore / s.restore).toFixed(2)}x (above 1 = stowage faster)\n`,
    );
  }
} finally {
  if (!keep) rmSync(work, { recursive: true, force: true });
  else process.stderr.write(`kept ${work}\n`);
}
