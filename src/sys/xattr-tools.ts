/**
 * Reading and setting extended attributes (and through them POSIX ACLs and file capabilities)
 * with the attr package's getfattr and setfattr: Node has no call for either, and a handful of
 * processes per backup or restore cost far less than one per file. The text they exchange is
 * xattr-dump.ts's.
 */
import { spawn } from 'node:child_process';
import { parseXattrDump, type XattrDumpEntry } from './xattr-dump.js';

/** The tool could not be run (not installed, or it failed as a whole): the caller goes on without attributes. */
export const TOOL_UNAVAILABLE = Symbol('tool missing');

interface ToolRun {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Run `cmd` in `cwd` with `input` on its stdin; TOOL_UNAVAILABLE when it does not exist. */
function runAttrTool(
  cmd: string,
  args: string[],
  cwd: string,
  input?: Buffer,
): Promise<ToolRun | typeof TOOL_UNAVAILABLE> {
  return new Promise((resolve, reject) => {
    // C locale: byte-wise name patterns and messages as the tools write them
    const child = spawn(cmd, args, {
      cwd,
      env: { ...process.env, LC_ALL: 'C' },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    // A read started ahead (a backup's getfattr) must not outlive a process that ends before it
    // is needed (a failed login, an unchanged tree): the CLI exits with process.exit.
    const stop = () => child.kill();
    process.once('exit', stop);
    const done = () => process.off('exit', stop);
    child.once('exit', done);
    child.once('error', done);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) =>
      e.code === 'ENOENT' ? resolve(TOOL_UNAVAILABLE) : reject(e),
    );
    child.on('close', (code) =>
      resolve({ code, stdout: Buffer.concat(out), stderr: Buffer.concat(err).toString('utf8') }),
    );
    // a tool that exits early (bad usage) closes its stdin: the EPIPE is not the restore's error
    child.stdin.on('error', () => {});
    child.stdin.end(input);
  });
}

/** Paths (relative to the tree's root, '.' for the root) to read the attributes of. */
export interface XattrReadTargets {
  /** Read with everything below (getfattr -R). */
  recursive: string[];
  /** Read for the path itself only (a mount point not descended into, a directory leading to one). */
  single: string[];
}

/**
 * strerror(EOPNOTSUPP) in the C locale, at the end of getfattr's complaint about a path on a
 * filesystem without extended attributes (vfat, some network and FUSE filesystems): there is
 * nothing to archive there, and PBS's client passes over it silently too.
 */
const NOT_SUPPORTED = ': Operation not supported';

/** Arguments per getfattr run: far below the kernel's argument size limit. */
const ARGS_PER_RUN = 1000;

/**
 * The attributes whose names match `pattern` (an extended regular expression) of every path
 * below `root` that `targets` cover, by path relative to `root` ('' for the root itself; the key
 * is the path's bytes as latin1). Symlinks are not followed. TOOL_UNAVAILABLE when getfattr is not
 * installed or failed as a whole (warned); what getfattr reports on stderr (a file that vanished) goes to `warn`.
 */
export async function readTreeXattrs(
  root: string,
  targets: XattrReadTargets,
  pattern: string,
  warn: (message: string) => void,
): Promise<Map<string, XattrDumpEntry['attrs']> | typeof TOOL_UNAVAILABLE> {
  const out = new Map<string, XattrDumpEntry['attrs']>();
  const runs: string[][] = [];
  for (const [paths, flags] of [
    [targets.recursive, ['-R', '-P']],
    [targets.single, []],
  ] as const)
    for (let i = 0; i < paths.length; i += ARGS_PER_RUN)
      runs.push([
        ...flags,
        '-h',
        '-d',
        '-e',
        'hex',
        '-m',
        pattern,
        '--',
        ...paths.slice(i, i + ARGS_PER_RUN),
      ]);
  for (const args of runs) {
    const run = await runAttrTool('getfattr', args, root);
    if (run === TOOL_UNAVAILABLE) return TOOL_UNAVAILABLE;
    // 1: some paths failed (each named on stderr), the rest was printed
    if (run.code !== 0 && run.code !== 1) {
      warn(`getfattr failed (status ${run.code}): ${run.stderr.trim()}`);
      return TOOL_UNAVAILABLE;
    }
    for (const line of run.stderr.split('\n'))
      if (line.trim() !== '' && !line.endsWith(NOT_SUPPORTED)) warn(`reading extended attributes: ${line}`);
    for (const e of parseXattrDump(run.stdout)) {
      const key = e.path.length === 1 && e.path[0] === 0x2e ? '' : e.path.toString('latin1');
      out.set(key, [...(out.get(key) ?? []), ...e.attrs]);
    }
  }
  return out;
}

/**
 * Set the attributes of `entries` (paths relative to `cwd`) with one `setfattr --restore`,
 * never following a symlink. Returns setfattr's complaints, one per attribute it could not set
 * (it goes on with the next), or TOOL_UNAVAILABLE when setfattr is not installed.
 */
export async function restoreXattrs(cwd: string, dump: Buffer): Promise<string[] | typeof TOOL_UNAVAILABLE> {
  // -h must come first: setfattr runs the restore while it parses the option
  const run = await runAttrTool('setfattr', ['-h', '--restore=-'], cwd, dump);
  if (run === TOOL_UNAVAILABLE) return TOOL_UNAVAILABLE;
  const complaints = run.stderr.split('\n').filter((l) => l.trim() !== '');
  if (run.code !== 0 && complaints.length === 0) complaints.push(`setfattr exited with status ${run.code}`);
  return complaints;
}
