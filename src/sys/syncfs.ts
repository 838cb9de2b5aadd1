/**
 * syncfs(2) for Node, which has no call for it: `sync -f PATH` (coreutils), run by one small shell
 * that lives as long as this process, not spawned from this process each time.
 *
 * Why a helper: Node spawns by fork + exec, and after a fork every page this process writes faults
 * once more (copy-on-write, until the child has exec'd, and the page-table entries stay
 * write-protected after that). On the benchmark machine (a PVM guest) touching 224 MiB again after
 * one spawn cost 0.8 s of CPU; a server with hundreds of MiB resident paid that for every backup
 * it finished. The shell is forked once, while the process is small, and forks only itself after.
 */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

/** Reads one path per line, answers `0` (synced) or `1` (sync failed) per line, in order. */
const HELPER_SCRIPT =
  'while IFS= read -r p; do if sync -f -- "$p" 2>/dev/null; then echo 0; else echo 1; fi; done';

let helper: ChildProcessWithoutNullStreams | undefined;
let waiting: Array<(ok: boolean) => void> = [];

/** Start the helper now, while this process is small (server start-up); later calls reuse it. */
export function startSyncfsHelper(): void {
  if (helper) return;
  const child = spawn('sh', ['-c', HELPER_SCRIPT], {
    stdio: ['pipe', 'pipe', 'ignore'] as const,
  }) as unknown as ChildProcessWithoutNullStreams;
  helper = child;
  let pending = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d: string) => {
    pending += d;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      const line = pending.slice(0, nl);
      pending = pending.slice(nl + 1);
      waiting.shift()?.(line === '0');
    }
    if (waiting.length === 0) unrefHelper(child);
  });
  const gone = () => {
    if (helper === child) helper = undefined;
    // what it had not answered is answered "failed": the caller falls back
    const lost = waiting;
    waiting = [];
    for (const w of lost) w(false);
  };
  child.on('error', gone);
  child.on('exit', gone);
  child.stdin.on('error', () => {});
  unrefHelper(child);
}

/** An idle helper keeps no process alive (a CLI command exits when it is done). */
function unrefHelper(child: ChildProcessWithoutNullStreams): void {
  child.unref();
  (child.stdout as unknown as { unref?: () => void }).unref?.();
  (child.stdin as unknown as { unref?: () => void }).unref?.();
}

function refHelper(child: ChildProcessWithoutNullStreams): void {
  child.ref();
  (child.stdout as unknown as { ref?: () => void }).ref?.();
  (child.stdin as unknown as { ref?: () => void }).ref?.();
}

/**
 * syncfs(2) of the file system holding `path`. Rejects when it failed (or `sync` is missing): the
 * caller falls back to fsync of what it wrote.
 */
export async function syncFilesystem(path: string): Promise<void> {
  // a path the line protocol cannot carry is synced by a process of its own
  if (/[\n\r]/.test(path)) {
    await execFileAsync('sync', ['-f', '--', path]);
    return;
  }
  startSyncfsHelper();
  const child = helper!;
  const ok = await new Promise<boolean>((resolve) => {
    waiting.push(resolve);
    refHelper(child);
    child.stdin.write(`${path}\n`);
  });
  if (!ok) throw new Error(`sync -f ${path} failed`);
}

/** The helper's process id while it runs (diagnostics and tests). */
export function syncfsHelperPid(): number | undefined {
  return helper?.pid;
}
